/* The pod sandbox's pause process for the CRI test: holds the pod's namespaces, reaps
 * what is re-parented to it, and exits 0 on TERM or INT (what kubelet's pause does). */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
    struct sigaction q = { .sa_handler = quit }, r = { .sa_handler = reap, .sa_flags = SA_NOCLDSTOP };
    if (sigaction(SIGTERM, &q, NULL) || sigaction(SIGINT, &q, NULL) || sigaction(SIGCHLD, &r, NULL))
        return 1;
    for (;;)
        pause();
}
