"""Object storage (s3://, gs://, oci://, ...): the one place that talks to a bucket for composer-bert.

Every client here is one that users' S3 code paths already use, so the tests' S3-compatible server on
127.0.0.1 exercises exactly what a user's bucket will: Composer's `ObjectStore` (boto3 for s3://; endpoint
from `S3_ENDPOINT_URL`, credentials from the standard AWS variables) for uploads, listings and checkpoint
downloads, and streaming's downloader (the same variables) for shards.

Failures of the store come out of boto3 as a dozen exception types; `store_problem` turns them into the one
line a user can act on (credentials, an unreachable endpoint, a missing bucket), for every CLI boundary.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer_bert.errors import UserError
from composer_bert.schema import bounded, positive

CREDENTIALS_HINT = "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and that they may use the bucket"
# ClientError codes that mean "these credentials may not do this" (S3 answers a HEAD with a bare 403).
_REFUSED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId",
            "ExpiredToken", "InvalidToken", "AllAccessDisabled"}
_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
                "ProxyConnectionError", "ConnectionError")


def is_remote(path: str | Path) -> bool:
    """Whether `path` is a URI (s3://bucket/key, gs://...) rather than a local path."""
    return "://" in str(path)


def split_uri(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, key prefix without slashes at either end), as Composer parses it."""
    from composer.utils import parse_uri

    scheme, bucket, path = parse_uri(uri)
    return scheme, bucket, path.strip("/")


def join_key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _endpoint() -> str:
    return os.environ.get("S3_ENDPOINT_URL") or "unset, so AWS itself"


def store_problem(err: BaseException, where: str) -> str | None:
    """One line for an object-store failure anywhere in `err`'s chain (None if it is not one); `where` names the URI."""
    for cause in _chain(err):
        kind = type(cause).__name__
        if kind == "ClientError":
            error = getattr(cause, "response", {}).get("Error", {})
            code = str(error.get("Code", "?"))
            if code in _REFUSED:
                return f"the object store refused access to {where} ({code}); {CREDENTIALS_HINT}"
            if code == "NoSuchBucket":
                return f"the bucket of {where} does not exist (NoSuchBucket); create it or fix the URI"
            return f"the object store failed on {where} ({code}: {error.get('Message', '')}); check the URI"
        if kind in ("NoCredentialsError", "PartialCredentialsError"):
            return f"no credentials for {where}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
        if kind in _UNREACHABLE and type(cause).__module__.startswith(("botocore", "urllib3")):
            reason = str(cause).splitlines()[0] if str(cause) else kind
            return (
                f"cannot reach the object store for {where} ({reason}); check that the endpoint "
                f"(S3_ENDPOINT_URL: {_endpoint()}) is up and reachable"
            )
    return None


def _raise_store_error(err: Exception, where: str, what: str) -> None:
    message = store_problem(err, where)
    if message is None:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        message = f"cannot {what} {where} ({first})"
    raise UserError(message) from None


@dataclass
class UploadConfig:
    """How long a run's uploads to a bucket `save_folder` may take before the run stops (the `upload:` section).

    Each request waits at most `timeout` seconds to connect and again to read, and is made at most `attempts`
    times in all, so a store that stops answering stops the run, with one line, after about attempts x timeout
    seconds plus the retries' backoff (1, 2, 4, ... s) and the batch that notices. Left to boto3 and Composer,
    a paused server cost many minutes (60 s timeouts, retried by botocore inside each of Composer's attempts).
    """

    timeout: float = positive(60.0, "a positive number of seconds")
    attempts: int = bounded(3, "a number of attempts >= 1", ge=1)

    def backend_kwargs(self, scheme: str) -> dict[str, Any]:
        """The ObjectStore keyword arguments that apply the limits: botocore's for s3:// (which retries inside
        the client, so Composer's own attempts never see an S3 error); other stores use Composer's attempts."""
        if scheme != "s3":
            return {}
        return {
            "client_config": {
                "connect_timeout": self.timeout,
                "read_timeout": self.timeout,
                "retries": {"mode": "standard", "total_max_attempts": self.attempts},
            }
        }


class RemoteFolder:
    """A folder in a bucket (`s3://bucket/prefix`) through Composer's ObjectStore for its scheme."""

    def __init__(self, uri: str, limits: UploadConfig | None = None) -> None:
        from composer.utils import build_remote_backend, maybe_create_object_store_from_uri

        self.uri = uri.rstrip("/")
        self.scheme, self.bucket, self.prefix = split_uri(self.uri)
        try:
            kwargs = limits.backend_kwargs(self.scheme) if limits is not None else {}
            if kwargs and self.bucket:  # the run's own timeouts and attempts (UploadConfig)
                self.store = build_remote_backend(self.scheme, {"bucket": self.bucket, **kwargs})
            else:
                self.store = maybe_create_object_store_from_uri(self.uri)
        except Exception as err:  # a missing client library or an unknown scheme
            _raise_store_error(err, self.uri, "open")
        if self.store is None or not self.bucket:
            raise UserError(f"'{uri}' is not a bucket URI such as s3://bucket/folder")

    def key(self, name: str) -> str:
        return join_key(self.prefix, name)

    def uri_of(self, name: str) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key(name)}"

    def names(self) -> list[str]:
        """Names (relative to the folder) of every object under it; also proves the credentials can list it."""
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            keys = self.store.list_objects(start)
        except Exception as err:
            _raise_store_error(err, self.uri, "list")
        return sorted(key[len(start):] for key in keys if key.startswith(start))

    def upload(self, local: str | Path, name: str) -> None:
        try:
            self.store.upload_object(self.key(name), str(local))
        except Exception as err:
            _raise_store_error(err, self.uri_of(name), "upload to")

    def upload_tree(self, local_dir: str | Path, last: Iterable[str] = ()) -> list[str]:
        """Upload every file under `local_dir` to this folder, the names in `last` after all others, in that order
        (a reader that waits for the last file never sees a half-uploaded folder); returns the names uploaded."""
        root = Path(local_dir)
        names = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        final = [name for name in last if name in names]
        for name in [n for n in names if n not in final] + final:
            self.upload(root / name, name)
        return names

    def download(self, name: str, local: str | Path) -> Path:
        """Download one object to `local` (atomically: Composer writes a temp file and renames it)."""
        try:
            self.store.download_object(self.key(name), str(local), overwrite=True)
        except Exception as err:
            _raise_store_error(err, self.uri_of(name), "download")
        return Path(local)

    def delete(self, names: Iterable[str]) -> None:
        """Delete objects (S3-compatible stores; others keep them)."""
        client: Any = getattr(self.store, "client", None)
        if client is None or self.scheme != "s3":
            return
        for name in names:
            try:
                client.delete_object(Bucket=self.bucket, Key=self.key(name))
            except Exception as err:
                _raise_store_error(err, self.uri_of(name), "delete")


def check_remote_folder(uri: str, key: str) -> None:
    """Prove before any work that the bucket folder `uri` (config key `key`) is reachable with these credentials."""
    try:
        RemoteFolder(uri).names()
    except UserError as err:
        raise UserError(f"config key '{key}' is '{uri}': {err}") from None


def download_to_temp(uri: str) -> Path:
    """Download one object (`s3://bucket/key`) to a fresh temp folder through Composer's `get_file`, which also
    follows the `.symlink` pointers Composer writes for `latest-rank0.pt`. The caller removes the folder."""
    from composer.utils import get_file

    destination = Path(tempfile.mkdtemp(prefix="composer_bert_download_")) / (Path(uri).name or "object")
    try:
        get_file(uri, str(destination))
    except BaseException as err:
        shutil.rmtree(destination.parent, ignore_errors=True)  # nothing half downloaded stays behind
        if isinstance(err, FileNotFoundError):  # Composer reports a refused HEAD (403) as missing too
            raise UserError(
                f"'{uri}' was not found in the object store; check the URI, or if it exists, {CREDENTIALS_HINT}"
            ) from None
        if isinstance(err, Exception):
            _raise_store_error(err, uri, "download")
        raise
    return destination


def download_files(uri: str, names: Iterable[str], into: Path) -> Path:
    """Those of `names` that the bucket folder `uri` holds, downloaded into a new folder under `into` named as the
    URI's last part (so a run read from there keeps its folder name as its label); none of them is a UserError."""
    folder = RemoteFolder(uri)
    held = set(folder.names())
    present = [name for name in names if name in held]
    if not present:
        raise UserError(f"'{uri}' holds none of {', '.join(names)}; check the URI")
    local = Path(tempfile.mkdtemp(dir=into)) / (Path(folder.prefix).name or folder.bucket)
    local.mkdir()
    for name in present:
        folder.download(name, local / name)
    return local


RANK0_CHECKPOINT = re.compile(r"^ep(\d+)-ba(\d+)-rank0\.pt$")


def checkpoint_uploads(
    folder: RemoteFolder,
    local_dir: str,
    *,
    filename: str,
    latest_filename: str,
    save_interval: str,
    overwrite: bool,
    num_checkpoints_to_keep: int,
    limits: UploadConfig,
) -> tuple[Any, Any]:
    """Composer's CheckpointSaver writing into `local_dir` and naming each checkpoint's remote copy in `folder`,
    and the RemoteUploaderDownloader that uploads them (and any file logged with `Logger.upload_file`).

    The uploader runs in threads, not spawned processes: no second copy of torch per worker, and it starts at
    once. Autoresume finds the checkpoints by their remote names; `num_checkpoints_to_keep` prunes only the
    local copies. `limits` bound how long a store that stops answering can hold the run.
    """
    from composer.callbacks import CheckpointSaver
    from composer.loggers import RemoteUploaderDownloader

    saver = CheckpointSaver(
        folder=local_dir,
        filename=filename,
        remote_file_name=folder.key(filename),
        latest_filename=latest_filename,
        latest_remote_file_name=folder.key(latest_filename),
        save_interval=save_interval,
        overwrite=overwrite,
        num_checkpoints_to_keep=num_checkpoints_to_keep,
    )
    uploader = RemoteUploaderDownloader(
        f"{folder.scheme}://{folder.bucket}",
        backend_kwargs=limits.backend_kwargs(folder.scheme) or None,  # Composer adds the bucket
        use_procs=False,
        num_concurrent_uploads=1,
        num_attempts=limits.attempts,
    )
    return saver, uploader
