/* SysV shared memory for the CRI test, which busybox cannot make:
 *   shm hold KEY TEXT   creates the segment (mode 0666: other users of the pod read it),
 *                       writes TEXT, stays attached until killed
 *   shm read KEY        prints the segment's text (fails when there is none) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: shm hold KEY TEXT | shm read KEY\n"); return 2; }
    key_t key = (key_t)strtol(argv[2], NULL, 0);
    int hold = strcmp(argv[1], "hold") == 0;
    int id = shmget(key, 4096, hold ? IPC_CREAT | 0666 : 0);
    if (id < 0) { perror("shmget"); return 1; }
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1) { perror("shmat"); return 1; }
    if (!hold) { printf("%s\n", p); return 0; }
    snprintf(p, 4096, "%s", argc > 3 ? argv[3] : "");
    printf("holding %d\n", id);
    fflush(stdout);
    for (;;)
        pause();
}
