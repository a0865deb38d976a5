"""A small OCI distribution client: manifests, blobs (with cross-repository mount), tags, referrers and the
`sha256-<hex>` fallback index; bearer and basic auth; errors that never carry a secret."""

from __future__ import annotations

import base64
import email.utils
import json
import os
import random
import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from rocmci.errors import RegistryError
from rocmci.oci.credentials import Credentials, load_credentials
from rocmci.oci.reference import (
    _TAG_RE,
    LOCAL_HOSTS,
    MANIFEST_TYPES,
    OCI_INDEX,
    PASSWORD_ENV,
    USER_ENV,
    Descriptor,
    Manifest,
    check_digest,
    digest_of,
    fallback_tag,
    registry_timeout,
    split_repository,
)

_RETRIES = 4
# How far a report time may run ahead of the registry's clock (its Date header): Kerberos' default skew. A report
# claiming a later time takes no part in choosing the newest report, and a publisher whose clock is further away
# than this from the registry's is refused.
CLOCK_TOLERANCE = timedelta(minutes=5)
_MAX_PAGES = 1000  # of a tag or referrers list: 1000 pages of up to 1000 tags; a registry that never stops is an error
_TRANSIENT = {429, 500, 502, 503, 504}


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


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
        # the challenge's scope and ours (a mount also needs pull on its source repository), one `scope` parameter each
        scopes = list(dict.fromkeys([*(params.get("scope") or "").split(), *scope.split()]))
        query: dict[str, Any] = {"service": params.get("service", ""), "scope": scopes}
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
            raise self._fail(response, f"token request to {realm} for {' '.join(scopes)}")
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

    def mount_blob(self, name: str, digest: str, source: str) -> None:
        """Mount blob `digest` from repository `source` into `name` on this registry, moving no bytes.

        201 means mounted. A 202 means the registry opened an upload instead (it could not mount, e.g. `source` lacks
        the blob or we may not read it): that upload is cancelled (DELETE its location), never filled, and this is an
        error; a blob already in `name` is not mounted again."""
        check_digest(digest)
        if self.blob_exists(name, digest):
            return
        scope = f"repository:{name}:pull,push repository:{source}:pull"
        path = f"/v2/{name}/blobs/uploads/"
        response = self.request("POST", path, scope=scope, params={"mount": digest, "from": source})
        if response.status_code == 201:
            return
        if response.status_code == 202:
            cancelled = self._cancel_upload(response, scope)
            raise self.error(
                f"mount of {digest} from {source} into {name} was not possible: the registry opened an upload instead "
                f"({cancelled}); is {digest[:19]} in {source}?"
            )
        raise self._fail(response, f"mount {digest} from {source} into {name}")

    def _cancel_upload(self, opened: requests.Response, scope: str) -> str:
        location = opened.headers.get("Location")
        if not location:
            return "it gave no upload location to cancel"
        response = self.request("DELETE", urljoin(self.base + "/", location), scope=scope)
        if response.status_code in (200, 202, 204, 404):
            return "upload cancelled"
        return f"cancelling the upload answered HTTP {response.status_code}"

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
            settle(time.monotonic() - started)
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


def settle(window: float) -> None:
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
