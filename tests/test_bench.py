"""A tiny smoke run of `bpfarena bench`: it produces the table, with positive numbers."""

from __future__ import annotations

import re

from bpfarena.bench import BEGIN, END, run_bench


def test_quick_bench_writes_the_table(kernel, tmp_path, capsys):
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nkept text\n")
    assert run_bench(quick=True, output=str(out)) == 0
    printed = capsys.readouterr().out
    text = out.read_text()
    assert "kept text" in text and BEGIN in text and END in text
    assert printed.strip() in text
    rows = {m.group(1).strip(): (m.group(2).strip(), m.group(3).strip())
            for m in re.finditer(r"^\| ([^|]+) \| ([^|]+) \| ([^|]+) \|", text, re.M)}

    def number(cell: str) -> float:
        m = re.search(r"[\d,]+(\.\d+)?", cell)
        assert m, cell
        return float(m.group(0).replace(",", ""))

    for what in ("htab insert, per key", "htab lookup, per key"):
        k, v = rows[what]
        assert number(k) > 0 and number(v) > 0
    for what in ("VM instructions per second, insert", "VM instructions per second, lookup",
                 "micro: straight-line ALU, insns/s", "micro: arena loads/stores, insns/s"):
        assert number(rows[what][1]) > 0, what
    assert number(rows["slowdown VM / kernel JIT, insert"][1]) > 0
    # a second run replaces the section instead of appending another
    run_bench(quick=True, output=str(out))
    assert out.read_text().count(BEGIN) == 1
