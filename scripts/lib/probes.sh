# Probes of scripts/setup: each checks one requirement precisely, prints what satisfies it
# (a path, a version) or why nothing does, and succeeds only when it is usable. Source it.
# They look for files under ${SHOAL_SETUP_ROOT:-} (a fake root in tests; empty = /).
# shellcheck shell=bash

SETUP_ROOT="${SHOAL_SETUP_ROOT:-}"

# The machine's library directories, as the dynamic loader and bindgen search them.
system_lib_dirs() {
    local arch
    arch="$(uname -m)-linux-gnu"
    local d
    for d in "$SETUP_ROOT"/usr/lib/llvm-*/lib; do
        [[ -d "$d" ]] && printf '%s\n' "$d"
    done | sort -t- -k2 -V -r
    printf '%s\n' "$SETUP_ROOT/usr/lib/$arch" "$SETUP_ROOT/lib/$arch" "$SETUP_ROOT/usr/lib64" \
        "$SETUP_ROOT/usr/lib" "$SETUP_ROOT/usr/local/lib" "$SETUP_ROOT/usr/local/lib64"
}

probe_coreutils() {
    local tool paths=()
    for tool in timeout sha256sum; do
        paths+=("$(command -v "$tool")") || {
            printf '%s not on PATH' "$tool"
            return 1
        }
    done
    printf '%s' "${paths[*]}"
}

# python3 on PATH, 3.9 or newer, whose `-m venv` works (Debian's needs python3-venv for
# ensurepip: without it the import succeeds and the venv fails).
probe_python_venv() {
    local py version tmp rc=0
    py="$(command -v python3)" || {
        printf 'python3 not on PATH'
        return 1
    }
    version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || {
        printf '%s does not run' "$py"
        return 1
    }
    if [[ "$(printf '3.9\n%s\n' "$version" | sort -V | head -n1)" != 3.9 ]]; then
        printf '%s is Python %s (3.9 or newer needed)' "$py" "$version"
        return 1
    fi
    tmp="$(mktemp -d)"
    python3 -m venv "$tmp/venv" >/dev/null 2>&1 || rc=$?
    rm -rf "$tmp"
    if ((rc)); then
        printf '%s (Python %s): `python3 -m venv` fails (no ensurepip?)' "$py" "$version"
        return 1
    fi
    printf '%s (Python %s, venv works)' "$py" "$version"
}

# mpi_family TEXT: "openmpi X.Y", "mpich X.Y", "intel X" or nothing, from version output.
mpi_family_of_mpirun() {
    local out
    out="$(mpirun --version 2>&1 | head -n 20)" || true
    case "$out" in
    *"Open MPI"* | *OpenRTE*) printf 'openmpi %s' "$(grep -o '[0-9][0-9]*\.[0-9][0-9]*' <<<"$out" | head -n1)" ;;
    *"Intel(R) MPI"*) printf 'intel %s' "$(grep -o '20[0-9][0-9][.0-9]*' <<<"$out" | head -n1)" ;;
    *HYDRA* | *MPICH* | *mpich*) printf 'mpich %s' "$(sed -n 's/.*Version: *\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' <<<"$out" | head -n1)" ;;
    esac
}

# The MPI whose mpi.h mpicc compiles against: preprocess a file that names each vendor's
# version macros and see which ones expand.
mpi_family_of_header() {
    local out last
    out="$(printf '#include <mpi.h>\nshoal_probe OMPI_MAJOR_VERSION.OMPI_MINOR_VERSION|MPICH_VERSION|I_MPI_VERSION\n' |
        "${MPICC:-mpicc}" -E -x c - 2>/dev/null)" || return 1
    last="$(grep '^shoal_probe ' <<<"$out" | tail -n1)"
    last="${last#shoal_probe }"
    local ompi="${last%%|*}" rest="${last#*|}"
    local mpich="${rest%%|*}" intel="${rest#*|}"
    if [[ "$intel" != I_MPI_VERSION ]]; then
        printf 'intel %s' "$(tr -d '"' <<<"$intel" | grep -o '20[0-9][0-9][.0-9]*' | head -n1)"
    elif [[ "$ompi" != OMPI_MAJOR_VERSION.OMPI_MINOR_VERSION ]]; then
        printf 'openmpi %s' "$(tr -d ' ' <<<"$ompi")"
    elif [[ "$mpich" != MPICH_VERSION ]]; then
        printf 'mpich %s' "$(tr -d '"' <<<"$mpich" | grep -o '^[0-9][0-9]*\.[0-9][0-9]*')"
    else
        return 1
    fi
}

# mpirun, mpicc and mpi.h of one and the same MPI (an mpirun of one MPI with the headers
# of another builds, then fails at run time).
probe_mpi() {
    local run cc from_run from_header
    run="$(command -v mpirun)" || {
        printf 'mpirun not on PATH'
        return 1
    }
    cc="$(command -v "${MPICC:-mpicc}")" || {
        printf 'mpirun %s, but no mpicc on PATH (the mpi crate builds with it)' "$run"
        return 1
    }
    from_run="$(mpi_family_of_mpirun)"
    if [[ -z "$from_run" ]]; then
        printf '%s: `mpirun --version` names no MPI this knows (Open MPI, MPICH, Intel MPI)' "$run"
        return 1
    fi
    from_header="$(mpi_family_of_header)" || {
        printf 'mpirun %s (%s), but `%s -E` cannot compile #include <mpi.h>' "$run" "$from_run" "$cc"
        return 1
    }
    if [[ "${from_run%% *}" != "${from_header%% *}" ]] ||
        { [[ "${from_run%% *}" == openmpi ]] && [[ "${from_run#* }" != "${from_header#* }" ]]; }; then
        printf 'mpirun %s is %s but %s compiles against mpi.h of %s: load one MPI' \
            "$run" "$from_run" "$cc" "$from_header"
        return 1
    fi
    printf 'mpirun %s and mpi.h via %s: %s' "$run" "$cc" "$from_run"
}

# pkg_with_header PACKAGE HEADER [MIN_VERSION]: pkg-config knows PACKAGE (at least
# MIN_VERSION) and HEADER exists in one of its include directories.
pkg_with_header() {
    local pkg="$1" header="$2" min="${3:-}" version dir dirs=()
    command -v pkg-config >/dev/null || {
        printf 'pkg-config not on PATH'
        return 1
    }
    version="$(pkg-config --modversion "$pkg" 2>/dev/null)" || {
        printf 'pkg-config knows no %s (no %s.pc)' "$pkg" "$pkg"
        return 1
    }
    if [[ -n "$min" ]] && ! pkg-config --atleast-version="$min" "$pkg"; then
        printf '%s %s is older than %s' "$pkg" "$version" "$min"
        return 1
    fi
    for dir in $(pkg-config --cflags-only-I "$pkg" 2>/dev/null); do
        dirs+=("${dir#-I}")
    done
    dirs+=("$SETUP_ROOT/usr/include" "$SETUP_ROOT/usr/local/include" "$SETUP_ROOT/usr/include/$(uname -m)-linux-gnu")
    for dir in "${dirs[@]}"; do
        if [[ -f "$dir/$header" ]]; then
            printf '%s %s (%s)' "$pkg" "$version" "$dir/$header"
            return 0
        fi
    done
    printf '%s %s has a .pc file but no %s (runtime library only?)' "$pkg" "$version" "$header"
    return 1
}

probe_hwloc() { pkg_with_header hwloc hwloc.h 2.0; }
probe_libudev() { pkg_with_header libudev libudev.h; }
# UCX: the ucp headers the bindings are generated from, and ucx_info (devices for `shoal info`).
probe_ucx() {
    command -v ucx_info >/dev/null || {
        printf 'ucx_info not on PATH'
        return 1
    }
    pkg_with_header ucx ucp/api/ucp.h 1.9
}

# A library bindgen itself would load: libclang.so, libclang-NN.so, libclang.so.N or
# libclang-NN.so.N (never libclang-cpp*), searched where clang-sys searches (LIBCLANG_PATH
# first, then `llvm-config --libdir`, LD_LIBRARY_PATH, the system directories), with
# clang's builtin headers (stddef.h) beside it, without which bindgen cannot parse mpi.h.
probe_libclang() {
    local dirs=() dir f name real resource
    [[ -n "${LIBCLANG_PATH:-}" ]] && dirs+=("$LIBCLANG_PATH")
    if command -v llvm-config >/dev/null 2>&1; then
        dir="$(llvm-config --libdir 2>/dev/null)" && dirs+=("$dir")
    fi
    local IFS=:
    for dir in ${LD_LIBRARY_PATH:-}; do
        [[ -n "$dir" ]] && dirs+=("$dir")
    done
    unset IFS
    mapfile -t -O "${#dirs[@]}" dirs < <(system_lib_dirs)
    local lib_only=""
    for dir in "${dirs[@]}"; do
        [[ -d "$dir" ]] || continue
        for f in "$dir"/libclang*.so*; do
            [[ -e "$f" ]] || continue
            name="${f##*/}"
            [[ "$name" =~ ^libclang(-[0-9]+(\.[0-9]+)*)?\.so(\.[0-9]+)*$ ]] || continue
            real="$(readlink -f "$f")"
            for resource in "${real%/*}"/clang/*/include/stddef.h "$dir"/clang/*/include/stddef.h; do
                if [[ -f "$resource" ]]; then
                    printf '%s (headers %s)' "$f" "${resource%/stddef.h}"
                    return 0
                fi
            done
            lib_only="${lib_only:-$f}"
        done
    done
    if [[ -n "$lib_only" ]]; then
        printf '%s, but not clang'"'"'s builtin headers (lib/clang/N/include/stddef.h) beside it' "$lib_only"
    elif [[ -n "${LIBCLANG_PATH:-}" ]]; then
        printf 'no libclang.so or libclang-NN.so[.N] in LIBCLANG_PATH=%s nor the system directories' "$LIBCLANG_PATH"
    else
        printf 'no libclang.so or libclang-NN.so[.N] in the library directories (libclang-cpp does not count)'
    fi
    return 1
}

# find_program NAME: on PATH or in an sbin directory (daemons often are not on PATH).
find_program() {
    command -v "$1" 2>/dev/null && return 0
    local d
    for d in "$SETUP_ROOT/usr/sbin" "$SETUP_ROOT/sbin" "$SETUP_ROOT/usr/local/sbin"; do
        if [[ -x "$d/$1" ]]; then
            printf '%s\n' "$d/$1"
            return 0
        fi
    done
    return 1
}

probe_programs() {
    local name paths=()
    for name in "$@"; do
        paths+=("$(find_program "$name")") || {
            printf '%s not found' "$name"
            return 1
        }
    done
    printf '%s' "${paths[*]}"
}

probe_slurm() { probe_programs slurmctld slurmd sbatch; }
probe_munge() { probe_programs munged; }
probe_chromium() { probe_programs chromium chromedriver; }
probe_prometheus() { probe_programs prometheus promtool; }
