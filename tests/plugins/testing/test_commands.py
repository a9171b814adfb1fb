"""``phongdich testing ...``: the whole flow from the command line."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from click.testing import CliRunner

from core.cli import Context, cli
from plugins.testing.commands import register

register(cli)


@pytest.fixture
def settings(databases):
    url = asyncio.run(databases.fresh_url())
    yield databases.settings(url)
    asyncio.run(databases.drop(url))


def run(settings, *args, ok=True):
    result = CliRunner().invoke(cli, ["testing", *args], obj=Context(settings))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_the_testing_flow_from_the_command_line(settings, tmp_path):
    run(
        settings,
        "sites",
        "add",
        "--code",
        "clinic-hn-1",
        "--name",
        "Trạm y tế Hoàn Kiếm",
        "--province",
        "01",
        "--pool-size",
        "5",
    )
    run(settings, "labs", "add", "--code", "lab-hn-1", "--name", "CDC Hà Nội", "--province", "01")
    assert "clinic-hn-1  01  pools<=5" in run(settings, "sites", "list").output
    assert "LOINC 94500-6" in run(settings, "test-types").output

    labels = []
    for index in range(3):
        out = run(
            settings,
            "samples",
            "register",
            "--site",
            "clinic-hn-1",
            "--name",
            f"Nguyễn Văn {index}",
            "--dob",
            "1990-01-0" + str(index + 1),
            "--phone",
            f"091234567{index}",
            "--receipt",
            str(tmp_path / f"receipt{index}.svg"),
        ).output
        labels.append(re.search(r"Sample (S-\S+)", out).group(1))
        assert re.search(r"Result code [0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", out)
    assert (tmp_path / "receipt0.svg").read_text().startswith("<svg")

    pool_out = run(settings, "pool", "--site", "clinic-hn-1", labels[0], labels[1]).output
    pool = re.search(r"Pool (P-\S+)", pool_out).group(1)
    received = run(settings, "receive", "--lab", "lab-hn-1", pool, labels[2]).output
    assert f"{pool}: pool, 2 sample(s) received" in received
    assert (
        "0 result(s) released, 2 retest(s) ordered"
        in run(settings, "result", "--lab", "lab-hn-1", pool, "positive").output
    )
    upload = tmp_path / "results.csv"
    upload.write_text(f"label,outcome,ct_value\n{labels[0]},positive,23\n{labels[1]},negative,\n", encoding="utf-8")
    imported = run(settings, "import", "--lab", "lab-hn-1", str(upload)).output
    assert "2 result(s) released" in imported and f"Reported positive to the province: {labels[0]}" in imported
    assert "1 result(s) released" in run(settings, "result", "--lab", "lab-hn-1", labels[2], "negative").output

    corrected = run(settings, "correct", "--reason", "swapped tubes on the rack", labels[1], "positive").output
    assert "is now positive (version 2)" in corrected
    shown = json.loads(run(settings, "samples", "show", labels[1]).output)
    assert [v["outcome"] for v in shown["results"]] == ["negative", "positive"]
    assert "lab-hn-1: 3 sample(s)" in run(settings, "turnaround").output
    assert "0 overdue sample(s)" in run(settings, "overdue").output


def test_command_line_errors_are_clear(settings, tmp_path):
    run(settings, "labs", "add", "--code", "lab-hn-1", "--name", "CDC Hà Nội", "--province", "01")
    unknown = run(settings, "receive", "--lab", "lab-hn-1", "S-" + "0" * 26, ok=False)
    assert unknown.exit_code == 1 and "no sample" in unknown.output
    bad = tmp_path / "bad.csv"
    bad.write_text("label,outcome\n=cmd|' /C calc'!A0,negative\n", encoding="utf-8")
    rejected = run(settings, "import", "--lab", "lab-hn-1", str(bad), ok=False)
    assert rejected.exit_code == 1 and "row 2 [label]" in rejected.output and "formula" in rejected.output
    wrong_province = run(settings, "sites", "add", "--code", "x", "--name", "Xa", "--province", "1", ok=False)
    assert wrong_province.exit_code == 2 and "province" in wrong_province.output


def test_correcting_a_pool_from_the_command_line(settings):
    run(settings, "sites", "add", "--code", "clinic-hn-1", "--name", "Trạm y tế Hoàn Kiếm", "--province", "01")
    run(settings, "labs", "add", "--code", "lab-hn-1", "--name", "CDC Hà Nội", "--province", "01")
    labels = []
    for index in range(2):
        out = run(
            settings,
            "samples",
            "register",
            "--site",
            "clinic-hn-1",
            "--name",
            f"Lê Thị {index}",
            "--dob",
            "1991-02-0" + str(index + 1),
            "--phone",
            f"098765432{index}",
        ).output
        labels.append(re.search(r"Sample (S-\S+)", out).group(1))
    pool = re.search(r"Pool (P-\S+)", run(settings, "pool", "--site", "clinic-hn-1", *labels).output).group(1)
    run(settings, "receive", "--lab", "lab-hn-1", pool)
    run(settings, "result", "--lab", "lab-hn-1", pool, "negative")
    positive = run(settings, "correct", "--reason", "plate map read wrongly", pool, "positive").output
    assert f"Pool {pool} is now positive (version 2)." in positive
    assert "Negative withdrawn and retest ordered:" in positive and all(label in positive for label in labels)
    negative = run(settings, "correct", "--reason", "the first reading was right", pool, "negative").output
    assert f"Pool {pool} is now negative (version 3)." in negative
    assert "Negative released, retest cancelled:" in negative
    shown = json.loads(run(settings, "samples", "show", labels[0]).output)
    assert [(v["outcome"], v["current"]) for v in shown["results"]] == [("negative", False), ("negative", True)]
    waiting = run(settings, "correct", "--reason", "not a pool at all", "P-" + "0" * 26, "positive", ok=False)
    assert waiting.exit_code == 1 and "no pool" in waiting.output
