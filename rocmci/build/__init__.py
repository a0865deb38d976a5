"""Stage 2, the build: matrix entries into images, each shared build once, skipped when its content-hashed tag exists.

Modules: `options` (options, results, the labels every image carries), `bake` (the `docker buildx bake` backend and
its bake file), `sdk` (the Docker SDK's legacy builder, pushes through the engine), `fileserver` (the build-time file
server: extra CA, offline wheelhouse, local wheels and repositories), `base` (the locally made Debian base image),
`run` (the build task and its summary), `record` (`invoke build --push`'s build record, read back from the registry),
`wheelhouse` (the offline wheelhouse).
"""

from rocmci.build.bake import bake_file, buildx_available
from rocmci.build.base import ensure_local_base
from rocmci.build.fileserver import FileServer, file_server
from rocmci.build.options import Backend, BuildOptions, BuildResult, build_time_labels
from rocmci.build.run import build_entries, build_entry, cached_steps_below_aiter, choose_backend, summary
from rocmci.build.wheelhouse import fill_wheelhouse
from rocmci.errors import BuildError

__all__ = [
    "Backend",
    "BuildError",
    "BuildOptions",
    "BuildResult",
    "FileServer",
    "bake_file",
    "build_entries",
    "build_entry",
    "build_time_labels",
    "buildx_available",
    "cached_steps_below_aiter",
    "choose_backend",
    "ensure_local_base",
    "file_server",
    "fill_wheelhouse",
    "summary",
]
