#!/bin/sh
# Installs aiter from the pinned source and leaves no build tree, pip cache or apt lists behind.
#   pypi : amd-aiter==AITER_SPEC (pure Python; kernels JIT-built at first call, needs hipcc in the image)
#   git  : AITER_SPEC = <repo>@<ref>, ref a release tag or a full commit (AITER_COMMIT); built with PREBUILD_KERNELS
#          and GPU_ARCHS so module_norm ships compiled. A file:// repo comes from the build file server as a git bundle.
#   wheel: AITER_SPEC = URL of a wheel (file:// URLs are served by the build file server)
# aiter's setup.py reads AITER_USE_SYSTEM_TRITON (a build arg, so in this environment): 1 keeps the installed Triton.
set -eu
pip_install() { python -P /opt/rocmci/rocmci_pip.py install "$@"; }
record() {
  printf '{"source": "%s", "spec": "%s", "commit": "%s", "describe": "%s"}\n' \
    "$AITER_SOURCE" "$AITER_SPEC" "$1" "$2" > /opt/rocmci/aiter-source.json
}

case "$AITER_SOURCE" in
  pypi)
    # amd-aiter 0.1.7.post2.dev18 imports `packaging` without declaring it.
    pip_install ${AITER_INDEX_URL:+--online-index "$AITER_INDEX_URL"} "amd-aiter==${AITER_SPEC}" packaging
    record "" ""
    ;;
  wheel)
    pip_install "$AITER_SPEC" packaging
    record "" ""
    ;;
  git)
    repo="${AITER_SPEC%@*}"; ref="${AITER_SPEC##*@}"
    if ! command -v git >/dev/null; then
      apt-get update -qq && apt-get install -y -qq --no-install-recommends git && rm -rf /var/lib/apt/lists/*
    fi
    if [ -z "$GPU_ARCHS" ] && [ -n "${ROCM_VERSION:-}" ]; then
      echo "install_aiter: GPU_ARCHS is empty: a source build needs the target gfx (the default 'native' runs rocminfo, which needs a GPU)" >&2; exit 1
    fi
    [ -n "$GPU_ARCHS" ] || PREBUILD_KERNELS=0  # a CPU-only stack has no gfx to prebuild for
    src=$(mktemp -d /tmp/aiter-src.XXXXXX)
    from=$(python -P /opt/rocmci/rocmci_pip.py git-source "$repo" /tmp)
    if [ -n "${AITER_COMMIT:-}" ]; then
      # `clone --branch` takes tags and branches, not commits. A blobless clone keeps every tag, so setuptools_scm
      # finds the release before the commit (a tagless shallow clone reads 0.1.dev1+g<sha>, naming no release).
      git clone --quiet --filter=blob:none --no-checkout "$from" "$src"
      git -C "$src" cat-file -e "$AITER_COMMIT^{commit}" 2>/dev/null || git -C "$src" fetch --quiet origin "$AITER_COMMIT"
      git -C "$src" -c advice.detachedHead=false checkout --quiet "$AITER_COMMIT"
      git -C "$src" submodule update --quiet --init --recursive --depth 1
    else
      git clone --quiet --depth 1 --branch "$ref" --recurse-submodules --shallow-submodules "$from" "$src"
    fi
    commit=$(git -C "$src" rev-parse HEAD)
    describe=$(git -C "$src" describe --tags --long 2>/dev/null || true)
    pip_install --no-build-isolation packaging ninja pybind11 setuptools setuptools-scm wheel
    (cd "$src" && PREBUILD_KERNELS="$PREBUILD_KERNELS" GPU_ARCHS="$GPU_ARCHS" MAX_JOBS="$(nproc)" \
        AITER_USE_SYSTEM_TRITON="${AITER_USE_SYSTEM_TRITON:-1}" \
        python -P /opt/rocmci/rocmci_pip.py install --no-build-isolation "$src")
    rm -rf "$src" /root/.cache /tmp/*
    record "$commit" "$describe"
    ;;
  *)
    echo "install_aiter: unknown AITER_SOURCE '$AITER_SOURCE' (expected pypi, git or wheel)" >&2; exit 1 ;;
esac
find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + 2>/dev/null || true
