"""``count-words``: the words of a text, a file or an http(s) URL.

Reads in chunks so progress can be reported as it goes and memory stays flat on big
files; the result holds the total, the number of distinct words and the top words.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rqjobs.exceptions import CountWordsError, InvalidTaskArguments
from rqjobs.tasks.commons import background_task, set_task_progress

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
_CHUNK_BYTES = 64 * 1024


def validate_count_words(arguments: dict[str, Any]) -> dict[str, Any]:
    """Exactly one source, and a file that exists: refused before any row is written.

    Returns the arguments with ``path`` made absolute, as the worker may run in
    another working directory than the enqueuer.
    """
    sources = [k for k in ("text", "path", "url") if arguments.get(k)]
    if len(sources) != 1:
        raise InvalidTaskArguments("count-words needs exactly one of --text, --path or --url")
    if arguments.get("path") and not Path(arguments["path"]).expanduser().is_file():
        raise InvalidTaskArguments(f"count-words: no such file: {arguments['path']}")
    url = arguments.get("url")
    if url and not url.lower().startswith(("http://", "https://")):
        raise InvalidTaskArguments(f"count-words: only http(s) URLs are read, got {url!r}")
    if int(arguments.get("top") or 0) < 0:
        raise InvalidTaskArguments("count-words: --top must not be negative")
    if arguments.get("path"):
        return {**arguments, "path": os.path.abspath(os.path.expanduser(arguments["path"]))}
    return dict(arguments)


def _text_chunks(text: str) -> Iterator[tuple[str, float]]:
    size = max(1, len(text))
    for start in range(0, len(text), _CHUNK_BYTES):
        yield text[start : start + _CHUNK_BYTES], min(1.0, (start + _CHUNK_BYTES) / size)


def _file_chunks(path: Path) -> Iterator[tuple[str, float]]:
    size = max(1, path.stat().st_size)
    done = 0
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            done += len(chunk.encode("utf-8", errors="replace"))
            yield chunk, min(1.0, done / size)


def _http_only_opener() -> Any:
    """A urllib opener that follows redirects to http(s) URLs only (never ftp: or file:)."""
    import urllib.request

    class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
            if not newurl.lower().startswith(("http://", "https://")):
                raise CountWordsError(f"{req.full_url} redirects to {newurl!r}: only http(s) URLs are read")
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    return urllib.request.build_opener(HttpOnlyRedirects)


def _url_chunks(url: str) -> Iterator[tuple[str, float]]:
    """Decoded chunks of the response body, refusing more than ``url_max_bytes``.

    The limit is checked twice: against Content-Length before reading (a clear error at
    once), and against the bytes actually read (a server may send no length, or lie).
    ``url_timeout_s`` bounds the connect and each read, not the whole transfer.
    """
    import codecs
    import urllib.error
    import urllib.request

    from rqjobs.config import current_settings

    settings = current_settings()
    limit = settings.url_max_bytes
    timeout_s = settings.url_timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": "rqjobs-count-words"})
    done = -1  # bytes of the body read so far; -1 until the response's headers arrived
    try:
        with _http_only_opener().open(request, timeout=timeout_s) as response:
            done = 0
            length = int(response.headers.get("Content-Length") or 0)
            if length > limit:
                raise CountWordsError(
                    f"{url} is {length} bytes (Content-Length), more than url_max_bytes ({limit} bytes)"
                )
            charset = response.headers.get_content_charset() or "utf-8"
            try:
                decoder = codecs.getincrementaldecoder(charset)(errors="replace")
            except LookupError:
                decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            while block := response.read(_CHUNK_BYTES):
                done += len(block)
                if done > limit:
                    raise CountWordsError(
                        f"{url} sent more than url_max_bytes ({limit} bytes); stopped reading"
                    )
                yield decoder.decode(block), (min(1.0, done / length) if length else 0.5)
            yield decoder.decode(b"", final=True), 1.0
    except urllib.error.HTTPError as exc:
        raise CountWordsError(f"GET {url} answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise CountWordsError(f"{url} did not answer within url_timeout_s ({timeout_s} s)") from None
        raise CountWordsError(f"cannot read {url}: {reason}") from None
    except TimeoutError:
        if done < 0:
            raise CountWordsError(f"{url} did not answer within url_timeout_s ({timeout_s} s)") from None
        raise CountWordsError(
            f"{url} stopped sending for url_timeout_s ({timeout_s} s) before the end of the body"
        ) from None
    except (OSError, ValueError) as exc:
        raise CountWordsError(f"cannot read {url}: {type(exc).__name__}: {exc}") from None


@background_task(name="count-words", validate=validate_count_words)
def count_words(
    text: str | None = None, path: str | None = None, url: str | None = None, top: int = 10
) -> dict[str, Any]:
    """Count the words of a text, a file or a URL."""
    if text:
        chunks, source = _text_chunks(text), "text"
    elif path:
        chunks, source = _file_chunks(Path(path)), str(path)
    elif url:
        chunks, source = _url_chunks(url), url
    else:
        raise ValueError("count-words needs one of text, path or url")
    counts: Counter[str] = Counter()
    carry = ""
    set_task_progress(0, f"reading {source}")
    for chunk, fraction in chunks:
        chunk = carry + chunk
        # a word may straddle two chunks: hold back the trailing partial word
        cut = len(chunk)
        while cut > 0 and (chunk[cut - 1].isalpha() or chunk[cut - 1] in "'’"):
            cut -= 1
        carry = chunk[cut:]
        counts.update(w.lower() for w in _WORD.findall(chunk[:cut]))
        set_task_progress(int(fraction * 99), f"counted {sum(counts.values())} words")
    counts.update(w.lower() for w in _WORD.findall(carry))
    total = sum(counts.values())
    set_task_progress(99, f"counted {total} words")  # the held-back last word counts too
    return {
        "source": source,
        "total": total,
        "unique": len(counts),
        "top": [[word, n] for word, n in counts.most_common(top)],
    }
