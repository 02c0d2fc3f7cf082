#!/usr/bin/env bash
# cargo, found as scripts/toolchain.sh finds it (the Makefile's $(CARGO): works under sudo).
set -euo pipefail
. "$(dirname "$0")/toolchain.sh"
exec cargo "$@"
