"""Pull stage: find and pull the newest validated image (`pull`, `find_validated`) and the deployment lock
(`pull_and_lock`, `write_lock`, `read_lock`, `verify_lock`)."""

from rocmci.pull.find import PullResult, find_validated, pull
from rocmci.pull.lock import Lock, LockError, pull_and_lock, read_lock, verify_lock, write_lock

__all__ = ["Lock", "LockError", "PullResult", "find_validated", "pull", "pull_and_lock", "read_lock", "verify_lock", "write_lock"]
