"""Display-width layout: Japanese text takes two columns a character, and nothing is cut."""

from __future__ import annotations

from notifier.cli.columns import table, truncate, width, wrap


def test_width_counts_wide_characters_twice() -> None:
    assert width("Order 7") == 7
    assert width("注文 1002") == 9
    assert width("ＥＪ１２") == 8  # fullwidth Latin and digits
    assert width("ﾃｽﾄ") == 3  # halfwidth katakana
    assert width("が") == 2
    assert width("か\u3099") == 2  # a combining mark takes no column


def test_table_lines_up_by_display_width() -> None:
    rows = [["1", "山田様のご注文", "pending"], ["22", "Order 7", "delivered"]]
    lines = table(rows, ["ID", "LABEL", "STAGE"]).splitlines()
    starts = [
        width(line[: line.index(stage)])
        for line, stage in zip(lines, ["STAGE", "pending", "delivered"], strict=True)
    ]
    assert len(set(starts)) == 1
    assert starts[0] == width("22") + 2 + width("山田様のご注文") + 2


def test_wrap_keeps_every_character_within_the_width() -> None:
    text = "550 5.1.1 メールボックスが見つかりません。宛先をご確認ください。 then some English words"
    for columns in (7, 12, 30):
        lines = wrap(text, columns)
        assert all(width(line) <= columns for line in lines)
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")


def test_truncate_marks_the_cut() -> None:
    assert truncate("short", 30) == "short"
    cut = truncate("ご注文番号 1001 山田太郎様 東京都千代田区", 12)
    assert width(cut) <= 12
    assert cut.endswith("…")
    assert cut.startswith("ご注文番号")
