"""``dmlc_tracker``, the package MXNet's ``tools/launch.py`` imports but the mxnet 1.9.1
wheel does not ship, installed from a hash-pinned source archive.

It lives in dmlc-core's source tree, which is not on PyPI. :func:`install_tracker`
fetches a hash-pinned PyPI source archive that vendors dmlc-core
(``requirements/tracker.txt``) straight from pip's configured index, checks its SHA-256
and extracts only ``dmlc_tracker/*.py``: nothing is built, no compiler is needed, and
pip never prepares (builds) the archive.
"""
import hashlib
import io
import os
import re
import shutil
import ssl
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from ..errors import UserError
from ..utils.fs import atomic_write, checkout_path

__all__ = ["TRACKER_REQUIREMENT", "tracker_available", "install_tracker", "index_urls"]

TRACKER_REQUIREMENT = checkout_path("requirements", "tracker.txt")
_MEMBER = "/xgboost/dmlc-core/tracker/dmlc_tracker/"
PYPI_SIMPLE = "https://pypi.org/simple"


def tracker_available():
    """Whether ``import dmlc_tracker`` would succeed."""
    import importlib.util
    return importlib.util.find_spec("dmlc_tracker") is not None


def _pinned(requirement):
    """(name, version, sha256) of the one ``name==version --hash=sha256:...`` line."""
    try:
        with open(requirement, encoding="utf-8") as f:
            lines = [ln.split("#", 1)[0].strip() for ln in f]
    except OSError as err:
        raise UserError("cannot read %s: %s" % (requirement, err.strerror or err))
    pins = [ln for ln in lines if ln]
    match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)\s+--hash=sha256:([0-9a-f]{64})",
                         pins[0]) if len(pins) == 1 else None
    if match is None:
        raise UserError("%s must hold exactly one line 'name==version --hash=sha256:<64 hex>'"
                        % requirement)
    return match.groups()


def _pip_config():
    """pip's effective settings as {key: value}, the most specific scope winning
    (environment over site over user over global), as ``pip config list`` prints them."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                             capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    rank = {"global": 0, "install": 1, "download": 1, "user": 2, "site": 3, ":env:": 4}
    found = {}
    for line in out.splitlines():
        head, sep, value = line.partition("=")
        scope, dot, key = head.rpartition(".")
        if not sep or not dot:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        level = rank.get(scope, 0)
        if key not in found or level >= found[key][0]:
            found[key] = (level, value)
    return {k: v for k, (_, v) in found.items()}


def index_urls(pip_config=None):
    """The package indexes pip would search: its ``index-url`` (PyPI unless configured,
    e.g. by ``PIP_INDEX_URL`` or ``pip config``), then its ``extra-index-url`` s."""
    conf = _pip_config() if pip_config is None else pip_config
    urls = [conf.get("index-url") or PYPI_SIMPLE]
    urls += conf.get("extra-index-url", "").split()
    return [u for i, u in enumerate(urls) if u and u not in urls[:i]]


def _ssl_context(pip_config):
    cafile = os.environ.get("PIP_CERT") or pip_config.get("cert")
    return ssl.create_default_context(cafile=cafile if cafile and os.path.isfile(cafile)
                                      else None)


def _open(url, context, timeout):
    """urlopen, with the user:password of an index URL sent as basic auth."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = urllib.request.url2pathname(parts.path)
        if os.path.isdir(path):  # pip reads a file:// index folder's index.html
            path = os.path.join(path, "index.html")
        return open(path, "rb")
    headers = {"Accept": "text/html", "User-Agent": "mobilenet-skip install_tracker"}
    if parts.username:
        import base64
        token = "%s:%s" % (urllib.parse.unquote(parts.username),
                           urllib.parse.unquote(parts.password or ""))
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
        netloc = parts.hostname + (":%d" % parts.port if parts.port else "")
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                  timeout=timeout, context=context)


def _redact(url):
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = "%s:***@%s" % (parts.username, parts.netloc.rsplit("@", 1)[1])
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def _find_archive(name, filename, indexes, context, timeout):
    """URL of ``filename`` on the first index whose simple page for ``name`` lists it.

    Raises
    ------
    UserError
        Naming every index and why it did not serve the file: unreachable (network)
        or not listing it.
    """
    project = re.sub(r"[-_.]+", "-", name).lower()
    reasons = []
    for index in indexes:
        page = index.rstrip("/") + "/" + project + "/"
        try:
            with _open(page, context, timeout) as f:
                html = f.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            reasons.append("%s: HTTP %d (%s)" % (_redact(page), err.code,
                                                 "no such project" if err.code == 404
                                                 else err.reason))
            continue
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", None) or err.strerror or err
            kind = ("not found" if isinstance(err, FileNotFoundError)
                    else "network error, unreachable")
            reasons.append("%s: %s (%s)" % (_redact(page), kind, reason))
            continue
        for href in re.findall(r"""href\s*=\s*["']([^"']+)["']""", html, re.I):
            url = urllib.parse.urljoin(page, href.replace("&amp;", "&"))
            path = urllib.parse.urlsplit(url).path
            if urllib.parse.unquote(path.rsplit("/", 1)[-1]) == filename:
                return url.split("#", 1)[0]
        reasons.append("%s: does not list %s" % (_redact(page), filename))
    raise UserError("could not locate %s: %s. Check network access and pip's index-url "
                    "(`pip config list`, PIP_INDEX_URL)" % (filename, "; ".join(reasons)))


def _cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mobilenet-skip")


def _fetch_verified(name, version, sha256, requirement, pip_config, timeout):
    """The archive's bytes, from the cache or the index, checked against ``sha256``."""
    filename = "%s-%s.tar.gz" % (name, version)
    cached = os.path.join(_cache_dir(), "%s-%s" % (sha256[:16], filename))
    try:
        with open(cached, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() == sha256:
            return data, cached
    except OSError:
        pass
    context = _ssl_context(pip_config)
    url = _find_archive(name, filename, index_urls(pip_config), context, timeout)
    try:
        with _open(url, context, timeout) as f:
            data = f.read()
    except (urllib.error.URLError, OSError) as err:
        raise UserError("could not download %s from %s (network error: %s)"
                        % (filename, _redact(url), getattr(err, "reason", None) or err))
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise UserError("hash mismatch: %s from %s has sha256 %s, but %s pins %s; refusing it"
                        % (filename, _redact(url), got, requirement, sha256))
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    try:  # a cache only spares the download next time; failing to write it is harmless
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        atomic_write(cached, write)
    except (OSError, UserError):  # UserError: atomic_write's full disk
        pass
    return data, url


def install_tracker(target=None, requirement=TRACKER_REQUIREMENT, timeout=None):
    """Fetch the pinned source archive, check its SHA-256 and extract ``dmlc_tracker``
    into ``target`` (default: this interpreter's site-packages).

    Only the archive's ``dmlc-core/tracker/dmlc_tracker/*.py`` files are read; pip does
    not prepare the archive, so nothing in it is built or run.

    Returns
    -------
    str
        The installed package directory.

    Raises
    ------
    UserError
        Naming the cause: the index unreachable (network), the file not on any index,
        a hash mismatch, an unreadable archive, or no ``dmlc_tracker`` inside it.
    """
    target = target or sysconfig.get_paths()["purelib"]
    name, version, sha256 = _pinned(requirement)
    conf = _pip_config()
    if timeout is None:
        try:
            timeout = float(os.environ.get("PIP_DEFAULT_TIMEOUT") or
                            conf.get("default-timeout") or conf.get("timeout") or 60)
        except ValueError:
            timeout = 60.0
    data, source = _fetch_verified(name, version, sha256, requirement, conf, timeout)
    files = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                head, sep, base = member.name.partition(_MEMBER)
                if sep and member.isfile() and base.endswith(".py") and "/" not in base:
                    files[base] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as err:
        raise UserError("%s (from %s) is not a readable .tar.gz: %s" % (
            os.path.basename(source), source, err))
    if "tracker.py" not in files or "local.py" not in files:
        raise UserError("%s (from %s) holds no dmlc_tracker package (no %s*.py)"
                        % (os.path.basename(source), source, _MEMBER.lstrip("/")))
    dest = os.path.join(target, "dmlc_tracker")
    try:
        os.makedirs(target, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".dmlc_tracker-", dir=target)
        for base, content in files.items():
            with open(os.path.join(staging, base), "wb") as f:
                f.write(content)
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.replace(staging, dest)
    except OSError as err:
        raise UserError("cannot write dmlc_tracker into %s: %s" % (target,
                                                                 err.strerror or err))
    return dest
