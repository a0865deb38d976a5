"""OCI registry client, publishing images with their compat reports, and pulling only validated images.

Publishing (`publish`): check every item's image, content tag and evidence before pushing any (`check_before_push`),
push the image through the Docker engine and verify that what landed is the validated image (`_push_verified`),
attach its report as an OCI 1.1 artifact whose `subject` is the image manifest (referrers API where the registry has
it, the `sha256-<hex>` tag-schema index where it does not), and only for a passing report move `<gpu>-validated` to
the image digest by PUTting the exact manifest bytes (`move_validated_tag`), and `<gpu>-<stack>-validated` for the
report's stack: the stack tag never changes stack, the GPU tag follows the newest pass of any stack.
Pulling (`find_validated` chooses, `pull` pulls): the newest image (by `report_order`, never by tag order) whose
verified report passed on the GPU (and stack, when asked); report times past the registry's clock + CLOCK_TOLERANCE
take no part.
Credentials come from the environment or the Docker config, never from a reference, and never appear in messages.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests

from rocmci.errors import RegistryError, RocmciError
from rocmci.labels import ENTRY_LABEL, EXTRA_CA_LABEL, GPU_LABEL, STACK_LABEL, VERDICT_LABEL
from rocmci.plan import validated_tag_for as validated_tag

if TYPE_CHECKING:
    import docker

    from rocmci.attest import PublishHooks, PullVerifier
    from rocmci.plan import Entry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
REPORT_ARTIFACT_TYPE = "application/vnd.rocmci.compat-report.v1+json"
INTOTO_MEDIA_TYPE = "application/vnd.in-toto+json"
VERDICTS = ("pass", "fail", "error", "not-run")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
DOCKER_HUB = "registry-1.docker.io"
USER_ENV, PASSWORD_ENV = "ROCMCI_REGISTRY_USER", "ROCMCI_REGISTRY_PASSWORD"
TIMEOUT_ENV = "ROCMCI_REGISTRY_TIMEOUT"
_DIGEST_RE = re.compile(r"^(sha256):([0-9a-f]{64})$|^(sha512):([0-9a-f]{128})$")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_RETRIES = 4
# How far a report time may run ahead of the registry's clock (its Date header): Kerberos' default skew. A report
# claiming a later time takes no part in choosing the newest report, and a publisher whose clock is further away
# than this from the registry's is refused.
CLOCK_TOLERANCE = timedelta(minutes=5)
_MAX_PAGES = 1000  # of a tag or referrers list: 1000 pages of up to 1000 tags; a registry that never stops is an error
_TRANSIENT = {429, 500, 502, 503, 504}

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- references and descriptors


def registry_timeout() -> float:
    """Seconds per registry request, from ROCMCI_REGISTRY_TIMEOUT (default 60); read when a registry task runs."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return 60.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise RegistryError(f"{TIMEOUT_ENV}: expected a number of seconds > 0 (got {text!r})")
    return seconds


def refuse_credentials(reference: str) -> None:
    """A repository reference never carries credentials (`user:password@host/repo`); the message never shows them."""
    if "@" in reference:
        after = reference.rsplit("@", 1)[1]
        raise RegistryError(
            f"registry reference <credentials>@{after}: credentials do not go in a reference; "
            f"use the Docker config (docker login {after.split('/', 1)[0]}) or set {USER_ENV}/{PASSWORD_ENV}"
        )


def split_repository(repository: str) -> tuple[str, str]:
    """`127.0.0.1:5000/rocmci` -> (`127.0.0.1:5000`, `rocmci`); Docker Hub names map to registry-1.docker.io."""
    refuse_credentials(repository)
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        host, name = first, rest
    else:
        host, name = DOCKER_HUB, repository if rest else f"library/{repository}"
    if host in {"docker.io", "index.docker.io"}:
        host = DOCKER_HUB
    if not re.fullmatch(r"[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*", name):
        raise RegistryError(f"invalid repository name {name!r} in {repository!r} (lowercase path components only)")
    return host, name


def check_digest(digest: str) -> tuple[str, str]:
    match = _DIGEST_RE.fullmatch(digest or "") if isinstance(digest, str) else None
    if not match:
        raise RegistryError(f"not a digest: {digest!r} (expected sha256:<64 hex>)")
    algorithm, hexpart = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    return algorithm, hexpart


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def fallback_tag(digest: str) -> str:
    """The OCI referrers tag schema: `<alg>-<hex>`, truncated to 128 characters."""
    algorithm, hexpart = check_digest(digest)
    return f"{algorithm}-{hexpart}"[:128]


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    data: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.data is not None:
            out["data"] = self.data
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Descriptor:
        try:
            check_digest(raw["digest"])
            return cls(
                media_type=str(raw["mediaType"]),
                digest=raw["digest"],
                size=int(raw["size"]),
                artifact_type=raw.get("artifactType"),
                annotations=dict(raw.get("annotations") or {}),
                data=raw.get("data"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"malformed descriptor {json.dumps(raw)[:200]}: {exc}") from None

    @classmethod
    def for_bytes(cls, media_type: str, data: bytes, **extra: Any) -> Descriptor:
        return cls(media_type=media_type, digest=digest_of(data), size=len(data), **extra)


EMPTY_DESCRIPTOR = Descriptor(EMPTY_MEDIA_TYPE, EMPTY_DIGEST, 2, data="e30=")


@dataclass(frozen=True)
class Manifest:
    """Manifest bytes exactly as the registry serves them (re-serializing would change the digest)."""

    media_type: str
    digest: str
    body: bytes = field(repr=False)

    @property
    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body)
        except ValueError:
            raise RegistryError(f"manifest {self.digest} is not JSON") from None
        if not isinstance(data, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return data

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.body))


# ---------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """Registry credentials; `source` names where they came from, the secret never appears in repr or messages."""

    username: str = field(repr=False)
    password: str = field(repr=False)
    source: str = ""
    identity_token: bool = False

    def secrets(self) -> list[str]:
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return [s for s in (self.password, basic) if len(s) >= 3]


def docker_config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def _normalize_server(key: str) -> str:
    host = re.sub(r"^[a-z]+://", "", key.strip()).split("/", 1)[0]
    return DOCKER_HUB if host in {"index.docker.io", "docker.io", DOCKER_HUB} else host


def _from_helper(helper: str, host: str) -> Credentials | None:
    program = shutil.which(f"docker-credential-{helper}")
    if not program:
        return None
    server = "https://index.docker.io/v1/" if host == DOCKER_HUB else host
    try:
        proc = subprocess.run([program, "get"], input=server, capture_output=True, text=True, timeout=30, check=False)
        data = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if not isinstance(data, dict) or not data.get("Secret"):
        return None
    user = str(data.get("Username") or "")
    return Credentials(user, str(data["Secret"]), f"credential helper docker-credential-{helper}", user == "<token>")


def _from_auths(auths: Mapping[str, Any], host: str, source: str) -> Credentials | None:
    for key, entry in auths.items():
        if _normalize_server(key) != host or not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credentials("<token>", str(entry["identitytoken"]), source, identity_token=True)
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
            return Credentials(user, password, source)
        if entry.get("username") and entry.get("password"):
            return Credentials(str(entry["username"]), str(entry["password"]), source)
    return None


def load_credentials(host: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """ROCMCI_REGISTRY_USER/ROCMCI_REGISTRY_PASSWORD, else the Docker config (credHelpers, credsStore, auths)."""
    env = os.environ if env is None else env
    if env.get(USER_ENV) and env.get(PASSWORD_ENV):
        return Credentials(env[USER_ENV], env[PASSWORD_ENV], f"environment ({USER_ENV}/{PASSWORD_ENV})")
    path = docker_config_path()
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    helper = (config.get("credHelpers") or {}).get(host) or (
        (config.get("credHelpers") or {}).get("index.docker.io") if host == DOCKER_HUB else None
    )
    for name in (helper, config.get("credsStore")):
        found = _from_helper(name, host) if name else None
        if found:
            return found
    return _from_auths(config.get("auths") or {}, host, f"docker config {path}")


# ---------------------------------------------------------------- HTTP client


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


class ImageMissing(RegistryError):
    """The local engine does not have the image an entry would publish."""


class RegistryClient:
    """A small OCI distribution client: manifests, blobs, tags, referrers; bearer and basic auth."""

    def __init__(self, host: str, insecure: bool | None = None, credentials: Credentials | None = None):
        self.host = host
        bare = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        plain = insecure if insecure is not None else (bare in LOCAL_HOSTS or host in LOCAL_HOSTS)
        self.base = f"{'http' if plain else 'https'}://{host}"
        self._timeout = registry_timeout()
        self._credentials = credentials if credentials is not None else load_credentials(host)
        self._session = requests.Session()
        self._session.headers["User-Agent"] = "rocmci-registry/1"
        self._tokens: dict[str, str] = {}
        self._basic = False
        self._referrers_api: bool | None = None
        self._date: tuple[datetime, float] | None = None  # the registry's last Date header, and when we read it

    def __repr__(self) -> str:
        source = self._credentials.source if self._credentials else "anonymous"
        return f"RegistryClient({self.base}, credentials from {source})"

    # ------------------------------------------------ errors without secrets

    def redact(self, text: str) -> str:
        """`text` with our password, basic-auth string and bearer tokens replaced by ***."""
        secrets = list(self._tokens.values()) + (self._credentials.secrets() if self._credentials else [])
        if len(os.environ.get(PASSWORD_ENV, "")) >= 3:
            secrets.append(os.environ[PASSWORD_ENV])
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def error(self, message: str) -> RegistryError:
        return RegistryError(self.redact(f"registry {self.host}: {message}"))

    def _fail(self, response: requests.Response, what: str) -> RegistryError:
        detail = ""
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors if isinstance(e, dict))
        except (ValueError, AttributeError, TypeError):
            detail = response.text[:200].strip()
        hint = ""
        if response.status_code in (401, 403):
            source = self._credentials.source if self._credentials else None
            hint = (
                f" (credentials from {source} were refused)"
                if source
                else f" (no credentials: run docker login {self.host} or set {USER_ENV}/{PASSWORD_ENV})"
            )
        return self.error(f"{what}: HTTP {response.status_code} {detail}{hint}".rstrip())

    # ------------------------------------------------ auth

    def _token(self, params: Mapping[str, str], scope: str) -> str:
        realm = params.get("realm")
        if not realm:
            raise self.error("bearer challenge without a realm")
        query = {"service": params.get("service", ""), "scope": params.get("scope") or scope}
        creds = self._credentials
        try:
            if creds and creds.identity_token:
                form = {**query, "grant_type": "refresh_token", "refresh_token": creds.password, "client_id": "rocmci"}
                response = self._session.post(realm, data=form, timeout=self._timeout)
            else:
                auth = (creds.username, creds.password) if creds else None
                response = self._session.get(realm, params=query, auth=auth, timeout=self._timeout)
        except requests.RequestException as exc:
            raise self.error(f"token service {realm} unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise self._fail(response, f"token request to {realm} for {query['scope']}")
        try:
            body = response.json()
            return str(body.get("token") or body["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise self.error(f"token service {realm} answered without a token") from None

    def _auth_header(self, scope: str) -> dict[str, str]:
        if scope in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[scope]}"}
        if self._basic and self._credentials:
            raw = f"{self._credentials.username}:{self._credentials.password}".encode()
            return {"Authorization": f"Basic {base64.b64encode(raw).decode()}"}
        return {}

    def request(self, method: str, path: str, *, scope: str, **kwargs: Any) -> requests.Response:
        """One request with the auth dance (answer a 401 challenge once: Bearer token or Basic), retrying transient
        5xx/429 answers (distribution 2.8 answers 500 while a concurrent writer replaces a tag) a few times."""
        url = path if path.startswith(("http://", "https://")) else f"{self.base}{path}"
        headers = dict(kwargs.pop("headers", {}) or {})
        challenged = False
        for attempt in range(_RETRIES + 1):
            response = self._send(method, url, {**headers, **self._auth_header(scope)}, kwargs)
            if response.status_code == 401 and not challenged:
                challenged = True
                if self._answer_challenge(response, scope):
                    response = self._send(method, url, {**headers, **self._auth_header(scope)}, kwargs)
            if response.status_code not in _TRANSIENT or attempt == _RETRIES:
                return response
            time.sleep(0.1 * 2**attempt + random.uniform(0, 0.1))
        return response

    def _send(self, method: str, url: str, headers: dict[str, str], kwargs: dict[str, Any]) -> requests.Response:
        try:
            response = self._session.request(method, url, headers=headers, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise self.error(f"{method} {url} failed: {type(exc).__name__}: {self.redact(str(exc))[:300]}") from None
        self._note_date(response)
        return response

    # ------------------------------------------------ the registry's clock

    def _note_date(self, response: requests.Response) -> None:
        try:
            moment = email.utils.parsedate_to_datetime(response.headers.get("Date") or "")
        except (TypeError, ValueError):
            return
        if moment.tzinfo is not None:
            self._date = (moment.astimezone(UTC), time.monotonic())

    def registry_now(self) -> datetime | None:
        """The registry's clock now: its last `Date` header (one-second resolution) plus the time since we read it;
        None when it sends none."""
        if self._date is None or time.monotonic() - self._date[1] > 30:
            self._send("GET", f"{self.base}/v2/", {}, {})
        if self._date is None:
            return None
        seen, at = self._date
        return seen + timedelta(seconds=time.monotonic() - at)

    def time_bound(self) -> datetime:
        """The latest report time to trust: the registry's clock (this host's when it sends no Date) + CLOCK_TOLERANCE."""
        return (self.registry_now() or datetime.now(UTC)) + CLOCK_TOLERANCE

    def _answer_challenge(self, response: requests.Response, scope: str) -> bool:
        """Get what the 401 asks for; False when we have nothing to answer with (the caller reports the 401)."""
        scheme, params = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "bearer":
            self._tokens[scope] = self._token(params, scope)
            return True
        if scheme == "basic" and self._credentials and not self._basic:
            self._basic = True
            return True
        return False

    # ------------------------------------------------ manifests

    def _manifest_path(self, name: str, reference: str) -> str:
        return f"/v2/{name}/manifests/{reference}"

    def head_manifest(self, name: str, reference: str) -> Descriptor | None:
        response = self.request(
            "HEAD",
            self._manifest_path(name, reference),
            scope=f"repository:{name}:pull",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, f"HEAD manifest {name}:{reference}")
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:
            return self.get_manifest(name, reference).descriptor
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        size = response.headers.get("Content-Length", "0")
        if not size.isdigit():
            raise self.error(f"HEAD manifest {name}:{reference}: Content-Length {size[:40]!r} is not a size")
        check_digest(digest)
        return Descriptor(media_type, digest, int(size))

    def tag_exists(self, name: str, tag: str) -> bool:
        return self.head_manifest(name, tag) is not None

    def get_manifest(self, name: str, reference: str) -> Manifest:
        response = self.request(
            "GET",
            self._manifest_path(name, reference),
            scope=f"repository:{name}:pull",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
        )
        if response.status_code != 200:
            raise self._fail(response, f"GET manifest {name}:{reference}")
        body = response.content
        if reference.startswith(("sha256:", "sha512:")):
            algorithm, _ = check_digest(reference)
            if digest_of(body, algorithm) != reference:
                raise self.error(f"manifest {name}@{reference} does not match its digest (got {digest_of(body, algorithm)})")
            digest = reference
        else:
            digest = response.headers.get("Docker-Content-Digest") or digest_of(body)
            if digest_of(body, check_digest(digest)[0]) != digest:
                raise self.error(f"manifest {name}:{reference} does not match the digest the registry gave ({digest})")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            media_type = str(Manifest(media_type, digest, body).json.get("mediaType") or media_type)
        return Manifest(media_type, digest, body)

    def put_manifest(self, name: str, reference: str, body: bytes, media_type: str) -> tuple[str, requests.Response]:
        """PUT manifest bytes unchanged under a tag or their digest; returns the digest and the response."""
        response = self.request(
            "PUT",
            self._manifest_path(name, reference),
            scope=f"repository:{name}:pull,push",
            data=body,
            headers={"Content-Type": media_type},
        )
        if response.status_code not in (200, 201):
            raise self._fail(response, f"PUT manifest {name}:{reference}")
        digest = digest_of(body)
        given = response.headers.get("Docker-Content-Digest")
        if given and given != digest:
            raise self.error(f"PUT manifest {name}:{reference}: registry stored {given}, expected {digest}")
        return digest, response

    def delete_manifest(self, name: str, digest: str) -> None:
        response = self.request("DELETE", self._manifest_path(name, digest), scope=f"repository:{name}:delete")
        if response.status_code not in (202, 404):
            raise self._fail(response, f"DELETE manifest {name}@{digest}")

    # ------------------------------------------------ blobs

    def blob_exists(self, name: str, digest: str) -> bool:
        response = self.request("HEAD", f"/v2/{name}/blobs/{digest}", scope=f"repository:{name}:pull")
        if response.status_code in (200, 307):
            return True
        if response.status_code == 404:
            return False
        raise self._fail(response, f"HEAD blob {name}@{digest}")

    def get_blob(self, name: str, descriptor: Descriptor, limit: int = 16 << 20) -> bytes:
        if descriptor.size > limit:
            raise self.error(f"blob {descriptor.digest} is {descriptor.size} bytes (limit {limit})")
        response = self.request("GET", f"/v2/{name}/blobs/{descriptor.digest}", scope=f"repository:{name}:pull")
        if response.status_code != 200:
            raise self._fail(response, f"GET blob {name}@{descriptor.digest}")
        data = response.content
        if digest_of(data, check_digest(descriptor.digest)[0]) != descriptor.digest or len(data) != descriptor.size:
            raise self.error(f"blob {name}@{descriptor.digest} does not match its descriptor")
        return data

    def upload_blob(self, name: str, data: bytes, media_type: str = "application/octet-stream", **extra: Any) -> Descriptor:
        """Monolithic upload (POST then PUT ?digest=); skipped when the blob is already there."""
        descriptor = Descriptor.for_bytes(media_type, data, **extra)
        if self.blob_exists(name, descriptor.digest):
            return descriptor
        scope = f"repository:{name}:pull,push"
        started = self.request("POST", f"/v2/{name}/blobs/uploads/", scope=scope)
        if started.status_code != 202 or "Location" not in started.headers:
            raise self._fail(started, f"start blob upload to {name}")
        location = urljoin(self.base + "/", started.headers["Location"])
        location += ("&" if "?" in location else "?") + f"digest={descriptor.digest}"
        done = self.request(
            "PUT",
            location,
            scope=scope,
            data=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
        )
        if done.status_code != 201:
            raise self._fail(done, f"finish blob upload {descriptor.digest} to {name}")
        return descriptor

    # ------------------------------------------------ tags and referrers

    def json_object(self, response: requests.Response, what: str) -> dict[str, Any]:
        """The body of a 200 answer as a JSON object, or a RegistryError saying what came instead."""
        try:
            body = response.json()
        except ValueError:
            kind = response.headers.get("Content-Type") or "no Content-Type"
            raise self.error(f"{what}: HTTP {response.status_code} with a body that is not JSON ({kind})") from None
        if not isinstance(body, dict):
            raise self.error(f"{what}: HTTP {response.status_code} with JSON that is not an object")
        return body

    def _paged(self, path: str, scope: str, params: dict[str, str], what: str) -> Iterator[requests.Response]:
        """Each page, following `Link: rel="next"` on this registry only, never a page twice, at most _MAX_PAGES."""
        url, seen = path, set()
        for _ in range(_MAX_PAGES):
            response = self.request("GET", url, scope=scope, params=params)
            yield response
            seen.add(response.url)
            following = response.links.get("next", {}).get("url") if response.status_code == 200 else None
            if not following:
                return
            url, params = urljoin(response.url, following), {}
            if urlsplit(url).netloc != urlsplit(self.base).netloc:
                raise self.error(f"{what}: the next page is on another host ({urlsplit(url).netloc}): not followed")
            if url in seen:
                raise self.error(f'{what}: Link rel="next" points back at a page already read ({url})')
        raise self.error(f"{what}: more than {_MAX_PAGES} pages: stopped")

    def list_tags(self, name: str, page_size: int = 1000) -> list[str]:
        """All tags (following Link: rel="next" pages); an unknown repository has none."""
        tags: list[str] = []
        what = f"tag list of {name}"
        for response in self._paged(f"/v2/{name}/tags/list", f"repository:{name}:pull", {"n": str(page_size)}, what):
            if response.status_code == 404:
                return []
            if response.status_code != 200:
                raise self._fail(response, f"list tags of {name}")
            page = self.json_object(response, what).get("tags") or []
            if not isinstance(page, list):
                raise self.error(f"{what}: `tags` is not a list")
            bad = [t for t in page if not isinstance(t, str) or not _TAG_RE.fullmatch(t)]
            if bad:
                raise self.error(f"{what} holds {json.dumps(bad[0])[:80]}, which is not a tag")
            tags.extend(page)
        return tags

    def referrers(self, name: str, digest: str, artifact_type: str | None = None) -> list[Descriptor]:
        """Referrers of `digest`: the referrers API, else the `sha256-<hex>` fallback index (404 -> fallback)."""
        check_digest(digest)
        if self._referrers_api is not False:
            found = self._referrers_via_api(name, digest, artifact_type)
            if found is not None:
                return found
        index = self.fallback_index(name, digest)
        return [d for d in index if artifact_type is None or d.artifact_type == artifact_type]

    def _referrers_via_api(self, name: str, digest: str, artifact_type: str | None) -> list[Descriptor] | None:
        params = {"artifactType": artifact_type} if artifact_type else {}
        found: list[Descriptor] = []
        what = f"referrers of {name}@{digest}"
        for response in self._paged(f"/v2/{name}/referrers/{digest}", f"repository:{name}:pull", params, what):
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            if response.status_code in (404, 405) or (response.status_code == 200 and content_type != OCI_INDEX):
                self._referrers_api = False
                return None
            if response.status_code != 200:
                raise self._fail(response, f"referrers of {name}@{digest}")
            self._referrers_api = True
            found.extend(_descriptors(self.json_object(response, what).get("manifests"), what))
        return [d for d in found if artifact_type is None or d.artifact_type == artifact_type]

    def fallback_index(self, name: str, digest: str) -> list[Descriptor]:
        tag = fallback_tag(digest)
        if not self.tag_exists(name, tag):
            return []
        manifest = self.get_manifest(name, tag)
        if manifest.media_type != OCI_INDEX:
            raise self.error(f"{name}:{tag} should be an OCI image index of referrers (it is {manifest.media_type})")
        return _descriptors(manifest.json.get("manifests"), f"{name}:{tag}")

    def add_to_fallback_index(self, name: str, subject_digest: str, descriptor: Descriptor, attempts: int = 8) -> None:
        """Read-modify-write the `sha256-<hex>` index; re-read after a settle delay and redo if a racer dropped us."""
        tag = fallback_tag(subject_digest)
        for _ in range(attempts):
            started = time.monotonic()
            current = self.fallback_index(name, subject_digest)
            if not any(d.digest == descriptor.digest for d in current):
                index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d.to_json() for d in [*current, descriptor]]}
                self.put_manifest(name, tag, _canonical(index), OCI_INDEX)
            _settle(time.monotonic() - started)
            if any(d.digest == descriptor.digest for d in self.fallback_index(name, subject_digest)):
                return
        raise self.error(f"could not keep {descriptor.digest} in {name}:{tag}: concurrent writers kept replacing it")


def _descriptors(listed: Any, what: str) -> list[Descriptor]:
    if listed is None:
        return []
    if not isinstance(listed, list) or not all(isinstance(m, dict) for m in listed):
        raise RegistryError(f"{what}: `manifests` is not a list of descriptors")
    return [Descriptor.from_json(m) for m in listed]


def _canonical(document: Mapping[str, Any]) -> bytes:
    """Strict JSON only: a non-finite figure never reaches a published document (standard parsers reject NaN)."""
    try:
        return json.dumps(document, indent=2, sort_keys=True, allow_nan=False).encode() + b"\n"
    except ValueError as exc:
        raise RegistryError(f"refusing to publish a document with a non-finite number: {exc}") from None


def _settle(window: float) -> None:
    """Wait longer than a racer's read-modify-write window so a write based on a stale read shows before we re-read."""
    time.sleep(max(0.15, 3 * window) + random.uniform(0, 0.15))


_CLIENTS: dict[tuple[str, bool | None], RegistryClient] = {}


def client_for(repository: str, insecure: bool | None = None) -> tuple[RegistryClient, str]:
    """A (cached) client for the repository's host and the repository's name on it."""
    host, name = split_repository(repository)
    key = (host, insecure)
    if key not in _CLIENTS:
        _CLIENTS[key] = RegistryClient(host, insecure)
    return _CLIENTS[key], name


def tag_exists(repository: str, tag: str, insecure: bool | None = None) -> bool:
    """Whether `<repository>:<tag>` exists (build.py skips content-hashed tags that are already pushed)."""
    client, name = client_for(repository, insecure)
    return client.tag_exists(name, tag)


# ---------------------------------------------------------------- report artifacts


def parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 time (got {value!r})")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ReportDocuments:
    """What report.entry_documents returns: the per-entry compat record and its in-toto statement."""

    record: Mapping[str, Any]
    statement: Mapping[str, Any]

    @property
    def verdict(self) -> str:
        return str(self.record.get("verdict"))

    @property
    def entry(self) -> Mapping[str, Any]:
        return self.record.get("entry") or {}

    @property
    def report_time(self) -> datetime:
        return parse_time(self.record.get("report_time"))

    def statement_subjects(self) -> list[str]:
        subjects = self.statement.get("subject") or []
        return [f"sha256:{s.get('digest', {}).get('sha256')}" for s in subjects if isinstance(s, dict)]

    def problems(self, image_digest: str) -> list[str]:
        """Why these documents cannot be a report on `image_digest` (empty when they can)."""
        found: list[str] = []
        if self.verdict not in VERDICTS:
            found.append(f"verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")
        try:
            self.report_time  # noqa: B018 - parse check
        except ValueError as exc:
            found.append(f"report_time: {exc}")
        if not self.entry.get("gpu") or not self.entry.get("id"):
            found.append("the record has no entry.id/entry.gpu")
        named = (self.record.get("image") or {}).get("digest")
        if named != image_digest:
            found.append(f"the record names image {named}, not {image_digest}")
        subjects = self.statement_subjects()
        if not subjects or subjects[0] != image_digest:
            found.append(f"the in-toto subject names {subjects[0] if subjects else 'nothing'}, not {image_digest}")
        return found


def as_documents(documents: ReportDocuments | tuple[Mapping[str, Any], Mapping[str, Any]]) -> ReportDocuments:
    return documents if isinstance(documents, ReportDocuments) else ReportDocuments(*documents)


def report_manifest(subject: Descriptor, documents: ReportDocuments, record: Descriptor, statement: Descriptor) -> dict[str, Any]:
    """The OCI 1.1 artifact manifest of a compat report on `subject`."""
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": REPORT_ARTIFACT_TYPE,
        "config": EMPTY_DESCRIPTOR.to_json(),
        "layers": [record.to_json(), statement.to_json()],
        "subject": Descriptor(subject.media_type, subject.digest, subject.size).to_json(),
        "annotations": _report_annotations(documents),
    }


def _report_annotations(documents: ReportDocuments) -> dict[str, str]:
    return {
        "org.opencontainers.image.created": str(documents.record.get("report_time")),
        VERDICT_LABEL: documents.verdict,
        ENTRY_LABEL: str(documents.entry.get("id", "")),
        GPU_LABEL: str(documents.entry.get("gpu", "")),
    } | ({STACK_LABEL: str(documents.entry["stack"])} if documents.entry.get("stack") else {})


def attach_report(
    repository: str,
    subject: Descriptor,
    documents: ReportDocuments | tuple[Mapping[str, Any], Mapping[str, Any]],
    *,
    client: RegistryClient | None = None,
    validate: bool = True,
) -> Descriptor:
    """Push the report as an artifact referring to `subject` (by digest) and index it; returns its descriptor.

    `validate=False` skips the consistency checks (only for tests that need a deliberately inconsistent report).
    """
    docs = as_documents(documents)
    client, name = (client, split_repository(repository)[1]) if client else client_for(repository)
    problems = docs.problems(subject.digest) if validate else []
    if problems:
        raise RegistryError(f"report for {repository}@{subject.digest} is inconsistent: {'; '.join(problems)}")
    client.upload_blob(name, EMPTY_JSON, EMPTY_MEDIA_TYPE)
    record = client.upload_blob(
        name, _canonical(docs.record), REPORT_ARTIFACT_TYPE, annotations={"org.opencontainers.image.title": "compat.json"}
    )
    statement = client.upload_blob(
        name,
        _canonical(docs.statement),
        INTOTO_MEDIA_TYPE,
        annotations={"org.opencontainers.image.title": "statement.intoto.json"},
    )
    body = _canonical(report_manifest(subject, docs, record, statement))
    digest, response = client.put_manifest(name, digest_of(body), body, OCI_MANIFEST)
    artifact = Descriptor(OCI_MANIFEST, digest, len(body), REPORT_ARTIFACT_TYPE, _report_annotations(docs))
    if response.headers.get("OCI-Subject") != subject.digest:
        client.add_to_fallback_index(name, subject.digest, artifact)
    return artifact


@dataclass(frozen=True)
class AttachedReport:
    """A report artifact read back and verified against the manifest it is attached to."""

    artifact: Descriptor
    subject_digest: str
    documents: ReportDocuments = field(repr=False)

    @property
    def verdict(self) -> str:
        return self.documents.verdict

    @property
    def report_time(self) -> datetime:
        return self.documents.report_time

    @property
    def entry(self) -> Mapping[str, Any]:
        return self.documents.entry


def read_report(client: RegistryClient, name: str, subject_digest: str, artifact: Descriptor) -> AttachedReport:
    """Fetch one report artifact and check it: attached to `subject_digest` and naming that same image."""
    manifest = client.get_manifest(name, artifact.digest).json
    short = artifact.digest[:19]
    if manifest.get("artifactType") != REPORT_ARTIFACT_TYPE:
        raise RegistryError(f"report {short}: artifactType is {manifest.get('artifactType')!r}")
    attached_to = (manifest.get("subject") or {}).get("digest")
    if attached_to != subject_digest:
        raise RegistryError(f"report {short} is listed for {subject_digest} but its subject is {attached_to}")
    layers = [Descriptor.from_json(layer) for layer in manifest.get("layers") or []]
    by_type = {layer.media_type: layer for layer in layers}
    if REPORT_ARTIFACT_TYPE not in by_type or INTOTO_MEDIA_TYPE not in by_type:
        raise RegistryError(f"report {short} lacks its compat record or in-toto statement layer")
    try:
        docs = ReportDocuments(
            *(json.loads(client.get_blob(name, by_type[t])) for t in (REPORT_ARTIFACT_TYPE, INTOTO_MEDIA_TYPE))
        )
    except ValueError:
        raise RegistryError(f"report {short} has a layer that is not JSON") from None
    problems = docs.problems(subject_digest)
    if problems:
        raise RegistryError(f"report {short} attached to {subject_digest} rejected: {'; '.join(problems)}")
    _check_validated_image(client, name, subject_digest, docs, short)
    return AttachedReport(artifact, subject_digest, docs)


def _check_validated_image(client: RegistryClient, name: str, subject_digest: str, docs: ReportDocuments, short: str) -> None:
    """A report that names the image id it validated must sit on that image: the id is the manifest's config
    digest (classic image store) or the manifest digest itself (containerd image store)."""
    validated_id = (docs.record.get("image") or {}).get("id")
    if not validated_id:
        return
    subject = client.get_manifest(name, subject_digest)
    if validated_id not in (subject.digest, config_digest(subject)):
        raise RegistryError(
            f"report {short} attached to {subject_digest} rejected: it validated image {str(validated_id)[:19]}, "
            f"and {subject_digest[:19]} is not that image (config {config_digest(subject)})"
        )


def attached_reports(
    client: RegistryClient, name: str, digest: str, keep: Callable[[Descriptor], str | None] = lambda _d: None
) -> tuple[list[AttachedReport], list[str]]:
    """Verified reports on `digest`, and why others were skipped; `keep` may skip by annotations before fetching."""
    reports: list[AttachedReport] = []
    skipped: list[str] = []
    for artifact in client.referrers(name, digest, REPORT_ARTIFACT_TYPE):
        why = keep(artifact)
        if why:
            skipped.append(why)
            continue
        try:
            reports.append(read_report(client, name, digest, artifact))
        except RegistryError as exc:
            skipped.append(f"rejected: {exc}")
    return reports, skipped


def _passing_on(gpu: str, stack: str | None = None) -> Callable[[Descriptor], str | None]:
    def keep(artifact: Descriptor) -> str | None:
        verdict = artifact.annotations.get(VERDICT_LABEL, "pass")
        on = artifact.annotations.get(GPU_LABEL, gpu)
        with_stack = artifact.annotations.get(STACK_LABEL) or stack
        if verdict != "pass":
            return f"verdict {verdict}"
        if stack and with_stack != stack:
            return f"report is for stack {with_stack}"
        return None if on == gpu else f"report is for {on}"

    return keep


def newest_passing_report(
    client: RegistryClient, name: str, digest: str, gpu: str, not_after: datetime | None = None, stack: str | None = None
) -> AttachedReport | None:
    """The last passing report on `digest` (on `gpu`, and `stack` when given) by report_order, among those claiming
    no time past `not_after`."""
    reports, _ = attached_reports(client, name, digest, _passing_on(gpu, stack))
    passing = [
        r
        for r in reports
        if r.verdict == "pass"
        and r.entry.get("gpu") == gpu
        and (stack is None or r.entry.get("stack") == stack)
        and (not_after is None or r.report_time <= not_after)
    ]
    return max(passing, key=report_order, default=None)


# ---------------------------------------------------------------- time and order of reports


def format_time(moment: datetime) -> str:
    """A report time as written: UTC, microseconds, `Z` (`2026-12-01T21:40:48.123456Z`)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def report_order(report: AttachedReport) -> tuple[datetime, str, str]:
    """The one order of passing reports, for publishers and pullers alike: the later report time wins; on equal
    times (to the microsecond) the larger image digest wins, then the larger report digest (plain string order)."""
    return (report.report_time, report.subject_digest, report.artifact.digest)


def ahead_of_registry(report: AttachedReport, bound: datetime) -> str | None:
    """Why a report may not take part in ordering: it claims a time past the registry's clock + CLOCK_TOLERANCE."""
    if report.report_time <= bound:
        return None
    return (
        f"report time {format_time(report.report_time)} is ahead of the registry's clock + {_tolerance()} "
        f"({format_time(bound)}): not trusted"
    )


def _tolerance() -> str:
    return f"{int(CLOCK_TOLERANCE.total_seconds())} s"


def publisher_time(client: RegistryClient, log: Log) -> datetime:
    """The report time this publisher may claim: its own clock (microseconds), refused when it is further than
    CLOCK_TOLERANCE from the registry's (its `Date` header): a runner with a clock in the future would otherwise
    claim the newest report for good."""
    now = _utc_now()
    registry_now = client.registry_now()
    if registry_now is None:
        log(f"publish: registry {client.host} sends no Date header: report time from this runner's clock, unchecked")
        return now
    skew = (now - registry_now).total_seconds()
    if abs(skew) > CLOCK_TOLERANCE.total_seconds():
        raise client.error(
            f"this runner's clock ({format_time(now)}) is {skew:+.0f} s from the registry's (Date {format_time(registry_now)}), "
            f"more than the {_tolerance()} allowed: fix the clock (NTP)"
        )
    return now


# ---------------------------------------------------------------- validated tag


@dataclass(frozen=True)
class TagMove:
    tag: str
    moved: bool
    reason: str


def move_validated_tag(
    client: RegistryClient,
    name: str,
    gpu: str,
    digest: str,
    report: AttachedReport,
    attempts: int = 6,
    stack: str | None = None,
) -> TagMove:
    """Point `<gpu>-validated` (`<gpu>-<stack>-validated` with a stack) at `digest` (exact manifest bytes) unless
    the current one has a later passing report on that GPU (and stack) (report_order; reports claiming a time past
    the registry's clock + CLOCK_TOLERANCE do not count).

    Racers converge: each re-reads after a settle delay longer than its own read-write window and re-decides.
    """
    tag = validated_tag(gpu, stack)
    wrong_stack = stack is not None and report.entry.get("stack") != stack
    if report.verdict != "pass" or report.entry.get("gpu") != gpu or report.subject_digest != digest or wrong_stack:
        on = f"{gpu} x {stack}" if stack else gpu
        return TagMove(tag, False, f"report {report.artifact.digest[:19]} is not a pass on {on} for {digest[:19]}")
    bound = client.time_bound()
    too_late = ahead_of_registry(report, bound)
    if too_late:
        return TagMove(tag, False, f"{too_late}: {tag} not moved")
    manifest = client.get_manifest(name, digest)
    for _ in range(attempts):
        started = time.monotonic()
        current = client.head_manifest(name, tag)
        if current is None or current.digest != digest:
            theirs = newest_passing_report(client, name, current.digest, gpu, bound, stack) if current else None
            if current and theirs and report_order(theirs) > report_order(report):
                return TagMove(
                    tag,
                    False,
                    f"{tag} stays on {current.digest}: its report ({format_time(theirs.report_time)}) is newer than ours "
                    f"({format_time(report.report_time)})",
                )
            client.put_manifest(name, tag, manifest.body, manifest.media_type)
        _settle(time.monotonic() - started)
        after = client.head_manifest(name, tag)
        if after and after.digest == digest:
            return TagMove(tag, True, f"{tag} -> {digest}")
    return TagMove(
        tag, False, f"{tag} kept changing under concurrent publishers; left it on {after.digest if after else 'nothing'}"
    )


# ---------------------------------------------------------------- which image a manifest is


def image_store(info: Mapping[str, Any]) -> str:
    """From the engine's `docker info`: `containerd` when it keeps images in containerd (DriverStatus has driver-type
    io.containerd.snapshotter.v1): there the image id is the manifest (or index) digest; else `classic`, where the
    image id is the config digest."""
    status = info.get("DriverStatus") or []
    containerd = any(
        isinstance(pair, list | tuple)
        and len(pair) == 2
        and pair[0] == "driver-type"
        and "containerd.snapshotter" in str(pair[1])
        for pair in status
    )
    return "containerd" if containerd else "classic"


def config_digest(manifest: Manifest) -> str | None:
    if manifest.media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        return None
    config = manifest.json.get("config")
    return config.get("digest") if isinstance(config, dict) else None


def image_mismatch(manifest: Manifest, image_id: str, store: str) -> str | None:
    """None when `manifest` is the local image `image_id` of an engine with this image store; else what it is."""
    if store == "containerd":
        return None if manifest.digest == image_id else f"the manifest is {manifest.digest}, not {image_id}"
    config = config_digest(manifest)
    return None if config == image_id else f"its config is {config}, not {image_id}"


# ---------------------------------------------------------------- publish


@dataclass(frozen=True)
class PublishItem:
    """One entry to publish: the local image that was validated, the tag to push it as, and its reports dir."""

    entry_id: str
    gpu: str
    local_ref: str
    tag: str
    entry_dir: Path
    validated_image_id: str | None = None
    problem: str | None = None  # why this entry must not be published (stale or unreadable result)
    recorded_digest: str | None = None  # the registry digest an earlier publish recorded in result.json
    stack: str | None = None  # the matrix stack: a pass also moves <gpu>-<stack>-validated


@dataclass(frozen=True)
class PublishResult:
    entry_id: str
    gpu: str
    status: str  # published | skipped | error
    reference: str | None = None  # <repository>@sha256:...
    tag: str | None = None
    verdict: str | None = None
    report_digest: str | None = None
    validated_tag: str | None = None
    moved: bool = False
    reason: str = ""
    moved_tags: tuple[str, ...] = ()  # every validated tag this publish moved (stack tag, GPU tag)
    attestation: str | None = None  # the predicate type signed (publish --sign)

    @property
    def ok(self) -> bool:
        return self.status != "error"


# (item, image digest, repository, report time) -> the compat record and in-toto statement for that image
DocumentsFor = Callable[[PublishItem, str, str, str], ReportDocuments | tuple[Mapping[str, Any], Mapping[str, Any]]]


def _report_documents(
    item: PublishItem, digest: str, repository: str, report_time: str
) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    from rocmci import report  # lazy: report.py depends on run outputs, tests may hand documents in directly

    return report.entry_documents(item.entry_dir, digest, repository, report_time=report_time)


def publish_items(entries: Iterable[Entry], reports_dir: Path, local_repository: str) -> list[PublishItem]:
    """Items for matrix entries: the image that was validated (result.json's image.ref/id). An entry whose result
    is unreadable, or was validated for another tag than the plan's (its inputs changed since), gets a problem
    and is never pushed: its report would otherwise be attached to an image under a tag it does not describe."""
    items = []
    for entry in entries:
        entry_dir = Path(reports_dir) / entry.id
        result_path = entry_dir / "result.json"
        image: dict[str, Any] = {}
        problem = None
        if result_path.is_file():
            try:
                result = json.loads(result_path.read_text())
                image = result.get("image") or {}
                validated_tag = (result.get("entry") or {}).get("tag")
            except (OSError, ValueError, AttributeError) as exc:
                problem, validated_tag = f"unreadable {result_path}: {exc}", None
            if problem is None and validated_tag != entry.tag:
                problem = (
                    f"stale result: {result_path} is for tag {validated_tag}, the plan's tag is {entry.tag} "
                    "(its inputs changed since): build and validate it again"
                )
        local_ref = image.get("ref") or entry.image_ref(local_repository)
        items.append(
            PublishItem(
                entry.id,
                entry.gpu,
                local_ref,
                entry.tag,
                entry_dir,
                image.get("id"),
                problem,
                image.get("digest"),
                entry.stack_name,
            )
        )
    return items


def _engine_auth() -> dict[str, str] | None:
    """Explicit auth for the engine only from our environment variables; the engine reads the Docker config itself."""
    if os.environ.get(USER_ENV) and os.environ.get(PASSWORD_ENV):
        return {"username": os.environ[USER_ENV], "password": os.environ[PASSWORD_ENV]}
    return None


def _stream(lines: Iterable[Any], what: str, log: Log, prefix: str, client: RegistryClient) -> str | None:
    """Follow an engine push/pull stream: log finished layers, raise on an error line, return the digest it reports."""
    digest = None
    for line in lines:
        if not isinstance(line, dict):
            continue
        if line.get("error") or line.get("errorDetail"):
            message = line.get("error") or (line.get("errorDetail") or {}).get("message")
            raise client.error(f"{what} failed: {message}")
        status = str(line.get("status", ""))
        finished = status in {"Pushed", "Layer already exists", "Pull complete", "Already exists"} or status.startswith(
            "Mounted from"
        )
        if line.get("id") and finished:
            log(f"{prefix}  {line['id']}: {status}")
        digest = (line.get("aux") or {}).get("Digest") or digest
    return digest


@dataclass(frozen=True)
class Checked:
    """An item whose local image, content tag and evidence were checked before anything of any item was pushed."""

    item: PublishItem
    image: Any = field(repr=False)  # docker.models.images.Image, fixed by id
    image_id: str
    in_registry: Manifest | None  # the content tag already names this very image: nothing to push


def _local_image(engine: docker.DockerClient, item: PublishItem) -> Any:
    from docker.errors import ImageNotFound

    try:
        image = engine.images.get(item.local_ref)
    except ImageNotFound:
        raise ImageMissing(f"{item.local_ref} is not in the local engine (run invoke build and validate first)") from None
    if image.labels.get(EXTRA_CA_LABEL) == "baked":
        raise RegistryError(
            f"{item.local_ref} has a private CA baked in (--bake-ca): it is for its build host only, never published"
        )
    if item.validated_image_id and image.id != item.validated_image_id:
        raise RegistryError(
            f"{item.local_ref} is {image.id[:19]} but validation ran on {item.validated_image_id[:19]}: validate it again"
        )
    return image


def _content_tag_in_registry(client: RegistryClient, repository: str, tag: str, image_id: str, store: str) -> Manifest | None:
    """The content tag's manifest when it already names this image; a content tag naming another image never moves."""
    name = split_repository(repository)[1]
    head = client.head_manifest(name, tag)
    if head is None:
        return None
    manifest = client.get_manifest(name, head.digest)
    why = image_mismatch(manifest, image_id, store)
    if why:
        raise RegistryError(
            f"{repository}:{tag} already names another image ({head.digest[:19]}: {why}): a content tag never moves to "
            "another digest; nothing pushed (build the same inputs reproducibly, or publish the image that tag names)"
        )
    return manifest


def check_before_push(
    item: PublishItem,
    repository: str,
    *,
    engine: docker.DockerClient,
    client: RegistryClient,
    store: str,
    documents_for: DocumentsFor,
    report_time: str,
) -> Checked:
    """Everything that can refuse an item without pushing: its result, local image, content tag and evidence.

    The evidence is built for the digest the image will have (the content tag's, an earlier publish's, or the image
    id as a stand-in before the first push); after the push it is built again for the pushed digest."""
    if item.problem:
        raise RegistryError(item.problem)
    image = _local_image(engine, item)
    in_registry = _content_tag_in_registry(client, repository, item.tag, image.id, store)
    expected = in_registry.digest if in_registry else (item.recorded_digest or image.id)
    problems = as_documents(documents_for(item, expected, repository, report_time)).problems(expected)
    if problems:
        raise RegistryError(f"the evidence of {item.entry_id} is inconsistent, nothing pushed: {'; '.join(problems)}")
    return Checked(item, image, image.id, in_registry)


def _push_verified(
    engine: docker.DockerClient, client: RegistryClient, checked: Checked, repository: str, store: str, log: Log
) -> Manifest:
    """Push the checked image under its content tag; the manifest that landed, or a refusal when it is not the
    validated image (the engine pushes whatever the local name means when the push starts: another publisher on
    this engine may re-tag that name in between, and the Docker API has no push by image id)."""
    item = checked.item
    prefix = f"publishing {item.entry_id}:"
    name = split_repository(repository)[1]
    checked.image.tag(repository, item.tag)  # from the image id, never from the mutable local name
    log(f"{prefix} pushing {repository}:{item.tag}")
    lines = engine.api.push(repository, tag=item.tag, stream=True, decode=True, auth_config=_engine_auth())
    pushed = _stream(lines, f"push of {repository}:{item.tag}", log, prefix, client)
    on_tag = None if pushed else client.head_manifest(name, item.tag)
    digest = pushed or (on_tag.digest if on_tag else None)
    if not digest or not client.head_manifest(name, digest):
        raise client.error(f"{repository}:{item.tag} is not in the registry after the push")
    manifest = client.get_manifest(name, digest)
    why = image_mismatch(manifest, checked.image_id, store)
    if why:
        raise RegistryError(
            f"refused: the push of {repository}:{item.tag} sent {digest}, which is not the validated image ({why}); "
            f"was {repository}:{item.tag} re-tagged during the push? no report attached, {validated_tag(item.gpu, item.stack)} "
            "not moved"
        )
    return manifest


def publish_one(
    checked: Checked,
    repository: str,
    *,
    engine: docker.DockerClient,
    client: RegistryClient,
    store: str,
    documents_for: DocumentsFor,
    log: Log,
    hooks: PublishHooks | None = None,
) -> PublishResult:
    """Push (unless the content tag already names the image), verify, attach the report, move the validated tags
    (`<gpu>-<stack>-validated`, then `<gpu>-validated`). Entries that share a build publish one image: the first
    pushes it, the others find it under the content tag and attach their own report to the same digest."""
    item = checked.item
    _, name = split_repository(repository)
    prefix = f"publishing {item.entry_id}:"
    base = {"entry_id": item.entry_id, "gpu": item.gpu, "tag": item.tag, "validated_tag": validated_tag(item.gpu, item.stack)}
    manifest = checked.in_registry or _content_tag_in_registry(client, repository, item.tag, checked.image_id, store)
    if manifest:
        log(f"{prefix} {repository}:{item.tag} already is this image ({manifest.digest}): not pushed again")
    else:
        manifest = _push_verified(engine, client, checked, repository, store, log)
    reference = f"{repository}@{manifest.digest}"
    docs = as_documents(documents_for(item, manifest.digest, repository, format_time(publisher_time(client, log))))
    blocked = None
    if hooks:  # rocmci.history's regression gate: the comparison goes into the record (issue 14)
        docs, blocked = hooks.before_attach(client, name, item.gpu, manifest.digest, docs, log)
    log(f"{prefix} attaching report ({docs.verdict}) to {reference}")
    artifact = attach_report(repository, manifest.descriptor, docs, client=client)
    base |= {"reference": reference, "verdict": docs.verdict, "report_digest": artifact.digest}
    if hooks:  # rocmci.attest: the record as a signed in-toto attestation, before any tag moves (issue 14)
        base["attestation"] = hooks.after_attach(reference, docs, log)
    wrong_stack = item.stack is not None and docs.entry.get("stack") != item.stack
    if docs.verdict != "pass" or docs.entry.get("gpu") != item.gpu or wrong_stack:
        why = (
            f"verdict {docs.verdict}"
            if docs.verdict != "pass"
            else f"report is for {docs.entry.get('gpu')} x {docs.entry.get('stack')}"
        )
        reasons = "; ".join(str(r) for r in docs.record.get("reasons") or [])[:300]
        reason = f"{why}{': ' + reasons if reasons else ''}: {base['validated_tag']} not moved"
        log(f"{prefix} {reason}")
        return PublishResult(status="published", moved=False, reason=reason, **base)
    if blocked:
        log(f"{prefix} {blocked}")
        return PublishResult(status="published", moved=False, reason=blocked, **base)
    report = read_report(client, name, manifest.digest, artifact)
    moves = []
    for stack in ([item.stack] if item.stack else []) + [None]:
        log(f"{prefix} moving {validated_tag(item.gpu, stack)}")
        moves.append(move_validated_tag(client, name, item.gpu, manifest.digest, report, stack=stack))
        log(f"{prefix} {moves[-1].reason}")
    if any(move.moved for move in moves):
        _ensure_listed(client, name, manifest.digest, artifact)
    moved = tuple(move.tag for move in moves if move.moved)
    reason = "; ".join(move.reason for move in moves)
    return PublishResult(status="published", moved=moves[0].moved, reason=reason, moved_tags=moved, **base)


def _ensure_listed(client: RegistryClient, name: str, digest: str, artifact: Descriptor) -> None:
    """The validated tag must not point at an image whose report a racing index writer dropped."""
    if not any(d.digest == artifact.digest for d in client.referrers(name, digest, REPORT_ARTIFACT_TYPE)):
        client.add_to_fallback_index(name, digest, artifact)


def publish(
    items: Sequence[PublishItem],
    repository: str,
    *,
    documents_for: DocumentsFor | None = None,
    engine: docker.DockerClient | None = None,
    client: RegistryClient | None = None,
    insecure: bool | None = None,
    log: Log = print,
    hooks: PublishHooks | None = None,
) -> list[PublishResult]:
    """Check every item (image, content tag, evidence) first, then push each by digest, verify that what landed
    is the validated image, attach its report, and move `<gpu>-validated` for passing reports only.

    One result per item; an error on one entry is recorded and the next entry still runs.
    """
    split_repository(repository)
    if engine is None:
        from rocmci.engine import docker_client

        engine = docker_client()
    client = client or client_for(repository, insecure)[0]
    documents_for = documents_for or _report_documents
    try:
        store = image_store(engine.info())
        report_time = format_time(publisher_time(client, log))
    except Exception as exc:  # the engine or the registry cannot serve this publish: every entry fails, none is pushed
        reason = client.redact(str(exc) if isinstance(exc, RocmciError) else f"{type(exc).__name__}: {exc}") + "; nothing pushed"
        log(f"publish: {reason}")
        return [_failed(item, "error", reason) for item in items]
    results: dict[int, PublishResult] = {}
    checked: dict[int, Checked] = {}
    for index, item in enumerate(items):
        outcome = _guarded(
            item,
            client,
            log,
            lambda item=item: check_before_push(
                item, repository, engine=engine, client=client, store=store, documents_for=documents_for, report_time=report_time
            ),
        )
        (checked if isinstance(outcome, Checked) else results)[index] = outcome
    for index, ready in checked.items():
        results[index] = _guarded(
            ready.item,
            client,
            log,
            lambda ready=ready: publish_one(
                ready, repository, engine=engine, client=client, store=store, documents_for=documents_for, log=log, hooks=hooks
            ),
        )
    return [results[index] for index in range(len(items))]


def _guarded(item: PublishItem, client: RegistryClient, log: Log, step: Callable[[], Any]) -> Any:
    """step()'s value, or the error result of this one entry (logged)."""
    try:
        return step()
    except ImageMissing as exc:
        unvalidated = not (item.entry_dir / "result.json").is_file()
        result = _failed(item, "skipped" if unvalidated else "error", str(exc))
    except (RocmciError, OSError, ValueError, KeyError) as exc:
        result = _failed(item, "error", client.redact(str(exc)))
    except Exception as exc:  # docker.errors.* and anything the engine raises: one entry fails, not the run
        result = _failed(item, "error", client.redact(f"{type(exc).__name__}: {exc}"))
    log(f"publishing {item.entry_id}: {result.status}: {result.reason}")
    return result


def _failed(item: PublishItem, status: str, message: str) -> PublishResult:
    return PublishResult(
        item.entry_id, item.gpu, status, tag=item.tag, validated_tag=validated_tag(item.gpu, item.stack), reason=message
    )


# ---------------------------------------------------------------- pull


@dataclass(frozen=True)
class PullResult:
    repository: str
    gpu: str
    reference: str  # <repository>@sha256:...
    digest: str
    tags: tuple[str, ...]
    entry: Mapping[str, Any]
    report_digest: str
    report_time: str
    image_id: str | None = None
    rejected: tuple[str, ...] = ()
    attestation: Mapping[str, Any] | None = None  # the verified signed attestation (pull --verify)


def _pin_matches(have: Any, want: str | None) -> bool:
    if not want:
        return True
    text = str(have or "")
    return text == want or text.startswith((want + ".", want + "+", want + "-"))


def _candidate_problem(
    report: AttachedReport, gpu: str, torch: str | None, aiter: str | None, stack: str | None = None
) -> str | None:
    if report.verdict != "pass":
        return f"verdict {report.verdict}"
    if report.entry.get("gpu") != gpu:
        return f"report is for {report.entry.get('gpu')}"
    if stack and report.entry.get("stack") != stack:
        return f"stack {report.entry.get('stack')} is not {stack}"
    for pin, want in (("torch", torch), ("aiter", aiter)):
        if not _pin_matches(report.entry.get(pin), want):
            return f"{pin} {report.entry.get(pin)} does not match {want}"
    return None


def find_validated(
    repository: str,
    gpu: str,
    torch: str | None = None,
    aiter: str | None = None,
    *,
    stack: str | None = None,
    build_prefixes: Sequence[str] = (),
    client: RegistryClient | None = None,
    insecure: bool | None = None,
    accept: Callable[[str, Mapping[str, Any]], str | None] | None = None,
) -> tuple[PullResult, list[str]]:
    """The newest (by report time) image of `gpu` (and `stack`) whose verified report passed and matches the pins;
    no pull. Candidates: tags starting with `<gpu>-` (its validated tags) and with each of `build_prefixes` (content
    tags of the builds the GPU runs: `gfx950-`, `cpu-`), so an older image a pin asks for is found too."""
    client, name = (client, split_repository(repository)[1]) if client else client_for(repository, insecure)
    by_digest: dict[str, list[str]] = {}
    prefixes = (f"{gpu}-", *(f"{prefix}-" for prefix in build_prefixes))
    for tag in sorted(t for t in client.list_tags(name) if t.startswith(prefixes)):
        head = client.head_manifest(name, tag)
        if head:
            by_digest.setdefault(head.digest, []).append(tag)
    best: AttachedReport | None = None
    notes: list[str] = []
    bound = client.time_bound()
    for digest, tags in by_digest.items():
        where = f"{tags[0]}@{digest[:19]}"
        reports, skipped = attached_reports(client, name, digest, _passing_on(gpu, stack))
        notes += [f"{where}: {why}" for why in skipped]
        if not reports and not skipped:
            notes.append(f"{where}: no report attached")
        for report in reports:
            problem = _candidate_problem(report, gpu, torch, aiter, stack) or ahead_of_registry(report, bound)
            if problem is None and accept is not None:  # rocmci.attest.PullVerifier: only signed reports (issue 14)
                problem = accept(digest, report.documents.record)
            if problem:
                notes.append(f"{where}: {problem}")
            elif best is None or report_order(report) > report_order(best):
                best = report
    if best is None:
        pins = "".join(f", {k} {v}" for k, v in (("stack", stack), ("torch", torch), ("aiter", aiter)) if v)
        listed = "; ".join(notes) if notes else f"no tags starting with {gpu}-"
        raise RegistryError(f"no image of {repository} passed on {gpu}{pins} ({len(by_digest)} candidates: {listed})")
    report, digest = best, best.subject_digest
    result = PullResult(
        repository=repository,
        gpu=gpu,
        reference=f"{repository}@{digest}",
        digest=digest,
        tags=tuple(by_digest[digest]),
        entry=dict(report.entry),
        report_digest=report.artifact.digest,
        report_time=str(report.documents.record.get("report_time")),
    )
    return result, notes


def pull(
    repository: str,
    gpu: str,
    torch: str | None = None,
    aiter: str | None = None,
    *,
    stack: str | None = None,
    build_prefixes: Sequence[str] = (),
    engine: docker.DockerClient | None = None,
    client: RegistryClient | None = None,
    insecure: bool | None = None,
    log: Log = _stderr,
    verifier: PullVerifier | None = None,
) -> PullResult:
    """Find the newest validated image for `gpu` (and stack, pins) and pull it by digest (rocmci.lock writes lock files)."""
    split_repository(repository)
    client = client or client_for(repository, insecure)[0]
    found, notes = find_validated(
        repository, gpu, torch, aiter, stack=stack, build_prefixes=build_prefixes, client=client, accept=verifier
    )
    if verifier:
        found = replace(found, attestation=verifier.lock_entry(found.digest))
    for note in notes:
        if "rejected" in note or "not trusted" in note:
            log(f"pull: {note}")
    log(f"pull: {found.reference} (tags {', '.join(found.tags)}; report {found.report_time}, {found.entry.get('id')})")
    if not stack:
        log(f"pull: stack {found.entry.get('stack')}: the newest pass of any stack on {gpu}; --stack keeps to one stack")
    if engine is None:
        from rocmci.engine import docker_client

        engine = docker_client()
    from docker.errors import DockerException

    try:
        lines = engine.api.pull(repository, tag=found.digest, stream=True, decode=True, auth_config=_engine_auth())
        _stream(lines, f"pull of {found.reference}", log, "pull:", client)
        image = engine.images.get(found.reference)
    except DockerException as exc:
        raise client.error(
            f"the engine could not pull {found.reference}: {exc} (is the engine logged in? docker login)"
        ) from None
    return replace(found, image_id=image.id, rejected=tuple(n for n in notes if "rejected" in n))
