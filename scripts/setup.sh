#!/usr/bin/env bash
# Installs everything anybit's build and tests need, idempotently:
#   - Debian packages: LLVM 22 and MLIR 22 development files (static linking needs libpolly;
#     the MLIR bindings' bindgen needs libclang and its headers),
#     zstd, and Python's venv module;
#   - a project-local Python virtual environment `.venv/` with ptxas/cuobjdump/nvdisasm and the
#     reference packages pinned in scripts/requirements.txt; the tools are linked into .venv/bin.
# A second run with nothing to do takes well under a second. Set ANYBIT_SKIP_APT=1 to skip the
# Debian step (e.g. on a machine where the packages come from elsewhere).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
requirements="$root/scripts/requirements.txt"
# libclang1-22 and libclang-common-22-dev: bindgen (mlir-sys, tblgen) for the MLIR backend (feature `mlir`).
apt_packages=(llvm-22-dev libpolly-22-dev libmlir-22-dev mlir-22-tools libclang1-22 libclang-common-22-dev libzstd-dev python3-venv)

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else say "need root (or sudo) to run: $*"; exit 1
    fi
}

install_debian_packages() {
    [ "${ANYBIT_SKIP_APT:-0}" = 1 ] && return 0
    local missing=() p
    for p in "${apt_packages[@]}"; do
        # python3-venv is only needed when the interpreter cannot make a venv on its own
        # (a pyenv or self-built Python already can).
        if [ "$p" = python3-venv ] && python3 -c 'import ensurepip, venv' 2>/dev/null; then continue; fi
        if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || { say "apt-get not found; install by hand: ${missing[*]}"; exit 1; }
    say "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_python_env() {
    local stamp="$venv/.anybit-requirements" want
    want=$(sha256sum "$requirements" | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/ptxas" ]; then
        return 0
    fi
    if [ ! -x "$venv/bin/python" ]; then
        say "creating the Python environment in $venv"
        python3 -m venv "$venv"
    fi
    say "installing Python packages from scripts/requirements.txt"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
    # The pinned NVIDIA wheels put their tools under site-packages/nvidia/cu13/bin (triton, pulled
    # in by torch, bundles other versions elsewhere): link the pinned ones where the tests look.
    local tool found
    for tool in ptxas cuobjdump nvdisasm; do
        found=$(find "$venv/lib" -path '*/site-packages/nvidia/cu13/bin/*' -type f -name "$tool" | head -n 1)
        [ -n "$found" ] || { say "$tool not found in the NVIDIA wheels (site-packages/nvidia/cu13/bin)"; exit 1; }
        chmod +x "$found"
        ln -sf "$found" "$venv/bin/$tool"
    done
    "$venv/bin/ptxas" --version >/dev/null
    echo "$want" >"$stamp"
}

install_debian_packages
install_python_env
