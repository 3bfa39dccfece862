"""Spreadsheet (CSV) orders to a watch file: every row checked, every problem named by line and column."""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import os
import re
import stat
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from notifier.config import CONFIG_ENV, Settings, name_problem
from notifier.core.mime import AddressError, validate_address
from notifier.core.numbers import parse_number
from notifier.errors import ConfigError

# Header names shops use, folded to ours. "tracking", "email" and friends come from common
# shop exports, the Japanese ones from Japanese carts and Japan Post's own shipping tools;
# matching ignores case, width (ＥＭＡＩＬ), spaces, underscores and hyphens.
_ALIASES = {
    "number": "number",
    "trackingnumber": "number",
    "tracking": "number",
    "お問い合わせ番号": "number",
    "お問合せ番号": "number",
    "問い合わせ番号": "number",
    "問合せ番号": "number",
    "追跡番号": "number",
    "伝票番号": "number",
    "送り状番号": "number",
    "label": "label",
    "order": "label",
    "ordernumber": "label",
    "注文番号": "label",
    "ご注文番号": "label",
    "受注番号": "label",
    "subscribers": "subscribers",
    "subscriber": "subscribers",
    "email": "subscribers",
    "emails": "subscribers",
    "メールアドレス": "subscribers",
    "メール": "subscribers",
    "eメール": "subscribers",
    "eメールアドレス": "subscribers",
    "電子メール": "subscribers",
    "locale": "locale",
    "language": "locale",
    "言語": "locale",
    "tags": "tags",
    "タグ": "tags",
    "destination": "destination",
    "country": "destination",
    "国": "destination",
    "国コード": "destination",
    "配送先国": "destination",
    "name": "name",
    "customername": "name",
    "氏名": "name",
    "お名前": "name",
    "お客様名": "name",
    "timezone": "time_zone",
    "zone": "time_zone",
    "タイムゾーン": "time_zone",
}
# Shopify's orders export (Orders > Export): one row per line item, an order's rows sharing its
# Name (#1001), the order's other columns filled on its first row only. Its "Name" is the order,
# not the customer, and the customer's name is the shipping name. Tracking numbers come from a
# tracking column where the export (or the app that made it) has one.
SHOPIFY = "shopify"
PLAIN = "plain"
_SHOPIFY_COLUMNS = {
    "name": "label",
    "email": "subscribers",
    "shippingname": "name",
    "shippingcountry": "destination",
    "trackingnumber": "number",
    "trackingnumbers": "number",
    "tracking": "number",
    "fulfillment:trackingnumber": "number",
    "tags": "tags",
}
# Headers only that export has together: the order name, and per line item columns.
_SHOPIFY_SIGNS = {"name", "email", "shippingname"}
# Values people type in a language column, folded to our locales.
_LOCALES = {"en": "en", "english": "en", "英語": "en", "ja": "ja", "japanese": "ja", "日本語": "ja"}
_ENCODING_NAMES = {
    "utf-8-sig": "UTF-8 with BOM",
    "utf-8": "UTF-8",
    "utf-16": "UTF-16",
    "cp932": "Shift_JIS (CP932)",
}
_SPLIT = re.compile(r"[;,\s]+")
_SPLIT_ADDRESSES = re.compile(r"[;,\s、，；]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportedWatch:
    number: str
    label: str
    subscribers: tuple[str, ...]
    locale: str
    name: str = ""
    tags: tuple[str, ...]
    destination: str | None
    time_zone: str | None
    line: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Orders:
    """What a CSV holds: the watches, and notes worth telling (the columns ignored)."""

    watches: list[ImportedWatch]
    notes: list[str]


class RowProblems(ConfigError):
    """Rows that could not be read, with the watches the other rows make: the duplicates among
    those are named in the same report, so every problem comes at once."""

    def __init__(self, message: str, watches: list[ImportedWatch]) -> None:
        super().__init__(message)
        self.watches = watches


def _fold(name: str) -> str:
    return re.sub(r"[\s_\-]", "", unicodedata.normalize("NFKC", name).strip().casefold())


def _column(name: str) -> str | None:
    return _ALIASES.get(_fold(name))


def detect_layout(header: list[str]) -> str:
    """SHOPIFY when the header is Shopify's orders export's, else PLAIN (today's column names)."""
    folded = {_fold(name) for name in header}
    is_shopify = folded >= _SHOPIFY_SIGNS and any(name.startswith("lineitem") for name in folded)
    return SHOPIFY if is_shopify else PLAIN


# A record to check: its cells by field, and the line each cell came from.
_Record = tuple[dict[str, str], dict[str, int]]


def _cells(header: list[str | None], row: list[str]) -> dict[str, str]:
    cells: dict[str, str] = {}
    for key, value in zip(header, row, strict=False):
        # With two columns mapping to one field (say 注文番号 and Order), the first filled one wins.
        if key and value.strip() and key not in cells:
            # Labels and names are kept as typed (a full-width name stays full-width).
            verbatim = key in ("label", "name")
            cells[key] = value.strip() if verbatim else unicodedata.normalize("NFKC", value).strip()
    return cells


def _shopify_records(
    header: list[str | None], lines: list[int], rows: list[list[str]], source: str, notes: list[str]
) -> list[_Record]:
    """One record per tracking number of each order: an order's rows are merged (its first
    filled cell of each column wins), a row with no Name continues the order above it."""
    orders: dict[str, tuple[dict[str, str], dict[str, int], dict[str, int]]] = {}
    current: str | None = None
    for line, row in zip(lines, rows, strict=True):
        cells = _cells(header, row)
        if not cells:
            continue
        current = cells.get("label") or current or f"line {line}"
        merged, where, numbers = orders.setdefault(current, ({}, {"label": line}, {}))
        for key, value in cells.items():
            if key == "number":
                # Several fulfilments: several numbers in one cell or on several rows.
                for number in filter(None, _SPLIT.split(value)):
                    numbers.setdefault(number, line)
            elif key not in merged:
                merged[key], where[key] = value, line
    records: list[_Record] = []
    for order, (merged, where, numbers) in orders.items():
        if not numbers:
            notes.append(
                f"{source}:{where['label']}: order {order}: no tracking number (not fulfilled yet): skipped"
            )
        for number, line in numbers.items():
            records.append(({**merged, "number": number}, {**where, "number": line}))
    return records


def decode_csv(data: bytes, source: str) -> tuple[str, str]:
    """The text of a CSV and the encoding it was in: UTF-8 (with or without BOM), UTF-16 with a
    BOM (Excel's "Unicode text"), or CP932, which Japanese Excel writes for "CSV"."""
    if data.startswith(codecs.BOM_UTF8):
        encodings = ["utf-8-sig"]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings = ["utf-16"]
    else:
        # Valid UTF-8 is almost never valid-looking CP932 by accident, so UTF-8 goes first.
        encodings = ["utf-8", "cp932"]
    error: UnicodeDecodeError | None = None
    for encoding in encodings:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            error = exc
    line = 1 + data[: error.start if error else 0].count(b"\n")
    raise ConfigError(
        f"{source}:{line}: neither UTF-8 nor Shift_JIS (CP932): save the sheet as "
        '"CSV UTF-8" or as "CSV" from Japanese Excel'
    )


def read_orders(text: str, source: str, preset: str = "auto") -> Orders:
    """Parse CSV text (comma, semicolon or tab separated; header row required), laid out as
    `preset` says (SHOPIFY, PLAIN) or, with "auto", as its header shows (see detect_layout)."""
    first_line = text.split("\n", 1)[0]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(first_line, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    # Each row with the line it starts on: a quoted cell may span lines (an address, a note).
    starts, rows, end = [], [], 0
    for row in reader:
        starts.append(end + 1)
        rows.append(row)
        end = reader.line_num
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ConfigError(f"{source}: empty file: nothing to import")
    layout = detect_layout(rows[0]) if preset == "auto" else preset
    if layout == SHOPIFY:
        header = [_SHOPIFY_COLUMNS.get(_fold(name)) for name in rows[0]]
        notes = [
            f"{source}:1: read as a Shopify orders export: rows grouped by order; Name is the label, "
            "Shipping Name the greeting, Email the subscriber, Shipping Country the destination"
        ]
        if "number" not in header:
            raise ConfigError(
                f"{source}:1: no tracking number column in this Shopify export (a header like "
                "'Tracking Number' or 'Fulfillment: Tracking Number'): add one, or export with an app that does"
            )
        records = _shopify_records(header, starts[1:], rows[1:], source, notes)
        return _checked(records, notes, source)
    header = [_column(name) for name in rows[0]]
    ignored = [
        name.strip() for name, known in zip(rows[0], header, strict=True) if known is None and name.strip()
    ]
    notes = []
    if ignored:
        notes.append(
            f"{source}:1: ignoring column(s) {', '.join(repr(n) for n in ignored)} "
            "(used: number, label, name, subscribers, locale, tags, destination, time_zone)"
        )
    problems = []
    if "number" not in header:
        problems.append(
            f"{source}:1: no number column (a header like 'number', 'tracking number' or 'お問い合わせ番号')"
        )
        raise ConfigError("\n".join(problems))
    records = []
    for line, row in zip(starts[1:], rows[1:], strict=True):
        if any(cell.strip() for cell in row):
            records.append((_cells(header, row), {"number": line}))
    return _checked(records, notes, source)


def _checked(records: list[_Record], notes: list[str], source: str) -> Orders:
    """The watches of `records`, each cell checked; every problem named by line and field."""
    problems: list[str] = []
    watches: list[ImportedWatch] = []
    seen: dict[str, int] = {}
    for cells, lines in records:
        line = lines["number"]

        def at(key: str, line: int = line, lines: dict[str, int] = lines) -> str:
            return f"{source}:{lines.get(key, line)}"

        try:
            number = parse_number(cells.get("number", "")).value
        except ValueError as exc:
            problems.append(f"{at('number')}: number: {exc}")
            continue
        if number in seen:
            problems.append(f"{at('number')}: number: {number} is already on line {seen[number]}")
            continue
        seen[number] = line
        subscribers = []
        for address in filter(None, _SPLIT_ADDRESSES.split(cells.get("subscribers", ""))):
            try:
                subscribers.append(validate_address(address))
            except AddressError as exc:
                problems.append(f"{at('subscribers')}: subscribers: {exc}")
        raw_locale = cells.get("locale", "")
        locale = _LOCALES.get(raw_locale.casefold(), "") if raw_locale else "en"
        if not locale:
            problems.append(f"{at('locale')}: locale: {raw_locale!r} must be en or ja (or 英語, 日本語)")
        destination = cells.get("destination", "").upper() or None
        if destination and not re.fullmatch(r"[A-Z]{2}", destination):
            problems.append(
                f"{at('destination')}: destination: {destination!r} is not a two-letter country code"
            )
        name = cells.get("name", "")
        if (reason := name_problem(name)) is not None:
            problems.append(f"{at('name')}: name: {reason}")
        zone = cells.get("time_zone") or None
        if zone:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                problems.append(
                    f"{at('time_zone')}: time_zone: {zone!r} is not an IANA time zone (like Asia/Tokyo)"
                )
        watches.append(
            ImportedWatch(
                number=number,
                label=cells.get("label", ""),
                subscribers=tuple(subscribers),
                locale=locale or "en",
                name=name,
                tags=tuple(filter(None, _SPLIT.split(cells.get("tags", "")))),
                destination=destination,
                time_zone=zone,
                line=line,
            )
        )
    if problems:
        raise RowProblems("\n".join(notes + problems), watches)
    if not watches:
        # An empty watch file is not harmless: with a watchlist, the config decides what is
        # polled, so every number this file used to hold would stop being polled.
        raise ConfigError(
            f"{source}: no orders, only a header: an empty watch file would stop polling every number "
            "it held (to stop watching them all, delete the watch file instead)"
        )
    return Orders(watches=watches, notes=notes)


def duplicates_in_config(
    watches: list[ImportedWatch], settings: Settings, source: str, output: Path | None
) -> list[str]:
    """Numbers the rest of the configuration already watches; the daemon would refuse the
    whole reload for one of them, so they are refused here, before writing."""
    replaced = output.resolve() if output is not None else None
    elsewhere: dict[str, str] = {}
    for watch in settings.watches:
        path = watch.source.rsplit(":", 1)[0]
        if replaced is not None and Path(path).resolve() == replaced:
            continue  # the file being replaced: its numbers go away with it
        elsewhere.setdefault(watch.number, watch.source)
    return [
        f"{source}:{w.line}: number: {w.number} is already watched at {elsewhere[w.number]}"
        for w in watches
        if w.number in elsewhere
    ]


def _toml_string(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(value, ensure_ascii=False)


def to_toml(watches: list[ImportedWatch], source: str) -> str:
    lines = [f"# Generated by `notifier import {source}`. Edit the spreadsheet and import again.", ""]
    for watch in watches:
        lines.append("[[watch]]")
        lines.append(f"number = {_toml_string(watch.number)}")
        if watch.label:
            lines.append(f"label = {_toml_string(watch.label)}")
        if watch.name:
            lines.append(f"name = {_toml_string(watch.name)}")
        lines.append(f"subscribers = [{', '.join(_toml_string(s) for s in watch.subscribers)}]")
        lines.append(f"locale = {_toml_string(watch.locale)}")
        if watch.tags:
            lines.append(f"tags = [{', '.join(_toml_string(t) for t in watch.tags)}]")
        if watch.destination:
            lines.append(f"destination = {_toml_string(watch.destination)}")
        if watch.time_zone:
            lines.append(f"time_zone = {_toml_string(watch.time_zone)}")
        lines.append("")
    return "\n".join(lines)


def _reference_file(path: Path) -> Path | None:
    """The file whose permissions a new watch file should copy: the one it replaces, else a
    sibling watch file, else any sibling file."""
    if path.is_file():
        return path
    try:
        siblings = sorted(p for p in path.parent.iterdir() if p.is_file() and not p.name.endswith(".tmp"))
    except OSError:
        return None
    tomls = [p for p in siblings if p.suffix == ".toml"]
    candidates = tomls or siblings
    return candidates[0] if candidates else None


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: Path, text: str) -> int:
    """The daemon reloads a watch file when it changes: it must never see half of one.

    The file gets the mode (and group, where allowed) of the file it replaces or of its
    neighbours, so the service user can read it as it reads them; with no neighbour, what a
    plain write would give. Returns the mode written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    reference = _reference_file(path)
    info = reference.stat() if reference is not None else None
    mode = stat.S_IMODE(info.st_mode) if info is not None else _default_mode()
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp"
    ) as handle:
        try:
            handle.write(text)
            handle.flush()
            # NamedTemporaryFile creates 0600, which the service user could not read.
            os.fchmod(handle.fileno(), mode)
            if info is not None and info.st_gid != os.fstat(handle.fileno()).st_gid:
                # Not ours to give away when unprivileged; the mode alone still matches.
                with contextlib.suppress(OSError):
                    os.fchown(handle.fileno(), -1, info.st_gid)
            os.fsync(handle.fileno())
        except BaseException:
            handle.close()
            os.unlink(handle.name)
            raise
    os.replace(handle.name, path)
    return mode


def _check_read_by(output: Path, config: str | None) -> None:
    """A watch file the configuration does not list is never polled: say so."""
    from notifier.config import load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:  # a change between our check and now; the daemon will say more
        print(f"notifier import: warning: the configuration no longer loads:\n{exc}", file=sys.stderr)
        return
    if output.resolve() not in {path.resolve() for path in settings.watch_files}:
        print(
            f"notifier import: note: {settings.source} does not read {output}: add it to "
            '[polling] watch_files (e.g. watch_files = ["watch.d/*.toml"]) or the daemon will not poll it',
            file=sys.stderr,
        )


def _duplicates(
    watches: list[ImportedWatch], config: str | None, file: Path, output: Path | None
) -> list[str]:
    """The numbers of `watches` the configuration already watches elsewhere; [] without one."""
    from notifier.config import load_settings

    if not (config or os.environ.get(CONFIG_ENV)):
        return []
    if output is not None:
        # The folder the file goes to is the one watch_files reads, which must exist for the
        # configuration to load; it would be made for the file anyway.
        with contextlib.suppress(OSError):
            output.parent.mkdir(parents=True, exist_ok=True)
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise ConfigError(f"cannot check for duplicates, the configuration has errors:\n{exc}") from exc
    return duplicates_in_config(watches, settings, str(file), output)


def run_import(file: Path, output: Path | None, config: str | None, preset: str = "auto") -> int:
    """`notifier import`: exit 0 when written, 2 when nothing was (every reason printed)."""
    from notifier.config import parse_settings

    try:
        data = file.read_bytes()
    except OSError as exc:
        print(f"notifier import: cannot read {file}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        text, encoding = decode_csv(data, str(file))
        try:
            orders = read_orders(text, str(file), preset)
        except RowProblems as exc:
            # The rows that were read are checked against the configuration too, so the
            # operator fixes everything in one pass.
            duplicates = _duplicates(exc.watches, config, file, output) if exc.watches else []
            raise ConfigError("\n".join([str(exc), *duplicates])) from exc
        for note in orders.notes:
            print(f"notifier import: note: {note}", file=sys.stderr)
        rendered = to_toml(orders.watches, file.name)
        parse_settings(rendered)  # the daemon will read it: prove it can, before writing
        if config or os.environ.get(CONFIG_ENV):
            duplicates = _duplicates(orders.watches, config, file, output)
            if duplicates:
                raise ConfigError("\n".join(duplicates))
        elif output is not None:
            print(
                "notifier import: note: no --config (nor $NOTIFIER_CONFIG): "
                "duplicates checked within the file only",
                file=sys.stderr,
            )
    except ConfigError as exc:
        print(f"notifier import: nothing written; fix these first:\n{exc}", file=sys.stderr)
        return 2
    if output is None:
        sys.stdout.write(rendered)
        return 0
    try:
        mode = write_atomically(output, rendered)
    except OSError as exc:
        print(f"notifier import: nothing written: cannot write {output}: {exc.strerror}", file=sys.stderr)
        return 2
    if config or os.environ.get(CONFIG_ENV):
        _check_read_by(output, config)
    subscribers = sum(len(w.subscribers) for w in orders.watches)
    print(
        f"wrote {len(orders.watches)} watches ({subscribers} subscribers) to {output} "
        f"(read as {_ENCODING_NAMES.get(encoding, encoding)}; mode {mode:04o})"
    )
    return 0
