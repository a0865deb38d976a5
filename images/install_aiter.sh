#!/bin/sh
# Installs aiter from the pinned source and leaves no build tree, pip cache or apt lists behind.
#   pypi : amd-aiter==AITER_SPEC (pure Python; kernels JIT-built at first call, needs hipcc in the image)
#   git  : AITER_SPEC = <repo>@<ref>; built with PREBUILD_KERNELS and GPU_ARCHS so module_norm ships compiled
#   wheel: AITER_SPEC = URL of a wheel (file:// URLs are served by the build file server)
set -eu
pip_install() { python -P /opt/rocmci/rocmci_pip.py install "$@"; }
record() { printf '{"source": "%s", "spec": "%s", "commit": "%s"}\n' "$AITER_SOURCE" "$AITER_SPEC" "$1" > /opt/rocmci/aiter-source.json; }

case "$AITER_SOURCE" in
  pypi)
    # amd-aiter 0.1.7.post2.dev18 imports `packaging` without declaring it.
    pip_install ${AITER_INDEX_URL:+--online-index "$AITER_INDEX_URL"} "amd-aiter==${AITER_SPEC}" packaging
    record ""
    ;;
  wheel)
    pip_install "$AITER_SPEC" packaging
    record ""
    ;;
  git)
    repo="${AITER_SPEC%@*}"; ref="${AITER_SPEC##*@}"
    if ! command -v git >/dev/null; then
      apt-get update -qq && apt-get install -y -qq --no-install-recommends git && rm -rf /var/lib/apt/lists/*
    fi
    [ -n "$GPU_ARCHS" ] || { echo "install_aiter: GPU_ARCHS is empty: a source build needs the target gfx (the default 'native' runs rocminfo, which needs a GPU)" >&2; exit 1; }
    src=$(mktemp -d /tmp/aiter-src.XXXXXX)
    git clone --quiet --depth 1 --branch "$ref" --recurse-submodules --shallow-submodules "$repo" "$src"
    commit=$(git -C "$src" rev-parse HEAD)
    pip_install --no-build-isolation packaging ninja pybind11 setuptools wheel
    (cd "$src" && PREBUILD_KERNELS="$PREBUILD_KERNELS" GPU_ARCHS="$GPU_ARCHS" MAX_JOBS="$(nproc)" \
        python -P /opt/rocmci/rocmci_pip.py install --no-build-isolation "$src")
    rm -rf "$src" /root/.cache /tmp/*
    record "$commit"
    ;;
  *)
    echo "install_aiter: unknown AITER_SOURCE '$AITER_SOURCE' (expected pypi, git or wheel)" >&2; exit 1 ;;
esac
find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + 2>/dev/null || true
