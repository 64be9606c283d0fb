#!/usr/bin/env bash
# The main job, end to end: builds the anybit CLI and shows what the compiler knows so far —
# data types of any bit width with their exact codecs, and the layout algebra that places tile
# elements on threads (the fragment layouts of mma.sync among them). Later stages grow this
# into compiling a low-bit matmul and running it on the GPU, or on the CPU interpreter when no
# GPU is present.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

./scripts/setup.sh
cargo build --release --locked --bin anybit
anybit() { "$root/target/release/anybit" "$@"; }
show() { printf '\n$ anybit %s\n' "$*"; anybit "$@"; }

show dtype f4e2m1 --table
show dtype f8e4m3
show dtype i3 --table
show dtype f6e3m2
show layout 'local(2,1).spatial(8,4).local(1,2)'
printf '\n$ anybit layout %s --table | head -n 8\n' "'local(2,1).spatial(8,4).local(1,2)'"
anybit layout 'local(2,1).spatial(8,4).local(1,2)' --table | head -n 8
show layout 'column_local(2,2).spatial(8,4).local(1,2)'
show layout 'replicated(2).column_spatial(4,8).local(2,1)'
