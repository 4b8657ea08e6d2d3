"""Labels for new texts from a trained run (what `sharcs predict` prints).

    rows = predict_texts(load_run("runs/sst2"), [("a gripping, funny film",)])

Each row holds the input text (its first `ECHO_CHARS` characters), the label string and its
probability (a score for regression) and the route taken (the width used, or the layers run by an
early-exit model).

`sharcs predict` streams: `input_lines` reads a file or stdin lazily, `parse_lines` turns each line
into texts (checking it as it comes), `batched` collects `--batch-size` of them, and `predict_batch`
answers each batch; memory is bounded by one batch, not by the input.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, TypeVar

from sharcs.data import Examples, tokenize_counted, validate_texts
from sharcs.data.examples import decode_lines
from sharcs.errors import SharcsError
from sharcs.inference.predict import predict
from sharcs.measure.evaluation import check_width, routing_arguments
from sharcs.modeling.pretrained import pad_id
from sharcs.storage.saved_run import Run

ECHO_CHARS = 200  # a row's "text" echoes at most this many characters of each input text
ELLIPSIS = "…"  # ends an echo that was cut; the row then also holds "text_truncated": true

_T = TypeVar("_T")


def echo(text: str, limit: int | None = ECHO_CHARS) -> tuple[str, bool]:
    """(the text, or its first `limit` characters followed by "…"; whether it was cut)."""
    if limit is None or len(text) <= limit:
        return text, False
    return text[:limit] + ELLIPSIS, True


def input_lines(stream: IO[Any], encoding: str, source: str) -> Iterator[str]:
    """The lines of a binary or text stream, read lazily as they arrive, without their line ends.

    A binary stream (a file opened "rb", or the bytes under sys.stdin) is decoded with `encoding`;
    bytes that do not decode are a SharcsError "<source>: line N is not valid UTF-8 (use --encoding)".
    """
    binary = getattr(stream, "buffer", None)
    if binary is None and isinstance(stream, io.TextIOBase):
        lines: Iterable[str] = stream  # an already decoded text stream (e.g. io.StringIO)
    else:
        lines = decode_lines(binary if binary is not None else stream, encoding, source)
    for line in lines:
        yield line.rstrip("\r\n")


def parse_line(line: str, pairs: int | None, where: str) -> tuple[str, ...]:
    """The text(s) of one non-blank input line: the whole line, or tab-separated texts for a pair model.

    `pairs` is the number of texts the model takes (None: as many as the line has, 1 or 2); `where`
    names the line in error messages ("stdin: line 3").
    """
    if pairs == 1:
        return (line,)
    parts = tuple(line.split("\t"))
    if pairs == 2 and len(parts) == 1:
        raise SharcsError(f"{where} has no tab; this model expects 2 texts separated by a tab")
    if pairs is not None and len(parts) != pairs:
        raise SharcsError(f"{where} has {len(parts)} tab-separated texts; this model expects {pairs}")
    if len(parts) > 2:
        raise SharcsError(f"{where} has {len(parts)} tab-separated texts; a model takes 1 or 2")
    for pos, text in enumerate(parts, start=1):
        if not text.strip():
            raise SharcsError(f"{where}: text {pos} of {len(parts)} is empty")
    return parts


def parse_lines(
    lines: Iterable[str], pairs: int | None, source: str, unit: str = "line", trailing_blanks: bool = True
) -> Iterator[tuple[str, ...]]:
    """The texts of each line, lazily; a bad line is a one-line SharcsError naming it ("stdin: line 4 ...").

    An empty (or whitespace-only) line is an error "line N is empty", except, with `trailing_blanks`,
    blank lines at the very end (they are ignored). Without `pairs` (a bare model folder) the first
    line decides between one text and a tab-separated pair. `unit` names the items ("line", "argument").
    """
    blank: int | None = None
    for number, line in enumerate(lines, start=1):
        where = f"{source}: {unit} {number}"
        if unit == "argument" and not _is_unicode(line):
            raise SharcsError(f"{where} is not valid UTF-8 text")
        if not line.strip():
            if not trailing_blanks:
                raise SharcsError(f"{where} is empty")
            blank = number if blank is None else blank
            continue
        if blank is not None:  # a blank line with text after it
            raise SharcsError(f"{source}: {unit} {blank} is empty")
        texts = parse_line(line, pairs, where)
        pairs = len(texts) if pairs is None else pairs
        yield texts


def _is_unicode(text: str) -> bool:
    """False for text holding lone surrogates (undecodable bytes of a command-line argument)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def batched(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """Lists of `size` items as soon as each is complete, then the rest. If reading an item fails,
    the items read before it still come as a last batch, then the error is raised."""
    batch: list[_T] = []
    failure: SharcsError | None = None
    try:
        for item in items:
            batch.append(item)
            if len(batch) == size:
                yield batch
                batch = []
    except SharcsError as error:
        failure = error
    if batch:
        yield batch
    if failure is not None:
        raise failure


def predict_batch(
    run: Run,
    texts: Sequence[tuple[str, ...]],
    width: float | None = None,
    source: str = "input",
    batch_size: int | None = None,
    echo_chars: int | None = ECHO_CHARS,
    setting: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """The rows of `predict_texts` for some texts (routed by the model's rule, or by the inference
    keywords `setting`, see `routing_arguments`), and how many of the texts were longer than the run's
    max_seq_length tokens (and truncated)."""
    label_list = run.label_list
    examples = Examples([tuple(t) for t in texts], None, label_list, source)
    if len(examples) == 0:
        raise SharcsError(f"{source}: no texts to predict")
    validate_texts(examples)
    data, truncated = tokenize_counted(examples, run.tokenizer, run.max_seq_length)
    out = predict(
        run.model,
        data,
        batch_size=batch_size or len(examples),
        width=width,
        pad_token_id=pad_id(run.tokenizer),
        setting=setting,
    )
    rows = []
    for i, text in enumerate(examples.texts):
        shown = [echo(part, echo_chars) for part in text]
        row: dict[str, Any] = {"text": shown[0][0] if len(text) == 1 else [part for part, _ in shown]}
        if any(cut for _, cut in shown):
            row["text_truncated"] = True
        if label_list is None:
            row["score"] = float(out.logits[i, 0])
        else:
            probs = out.logits[i].softmax(-1)
            best = int(probs.argmax())
            row["label"] = label_list[best]
            row["probability"] = float(probs[best])
        row[run.model.route_name] = float(out.routes[i])
        rows.append(row)
    return rows, truncated


def predict_texts(
    run: Run,
    texts: Sequence[tuple[str, ...]],
    batch_size: int = 64,
    width: float | None = None,
    tau: float | None = None,
    source: str = "input",
    echo_chars: int | None = ECHO_CHARS,
) -> list[dict[str, Any]]:
    """One dict per text: the text (cut to `echo_chars` characters, with "text_truncated": true when
    it was; None: whole), label + probability (or score for regression) and the width it ran at."""
    if batch_size < 1:
        raise SharcsError(f"--batch-size: must be at least 1, got {batch_size}")
    check_width(run.model, width)
    setting = routing_arguments(run.model, tau)
    return predict_batch(run, texts, width, source, batch_size, echo_chars, setting)[0]
