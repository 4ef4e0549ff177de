"""`prepare` on small HTML, CSV and SQL fixtures written here."""

from __future__ import annotations

import json

import pytest

from engine.diagnose.prepare import DUPLICATE, EMPTY, SLOP, prepare
from engine.diagnose.raw_sources import html_to_text
from engine.diagnose.sql_inserts import insert_rows
from engine.errors import DataError, UserError


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


PAGE = """<!doctype html><html><head><title>Example HTML Page</title>
<style>p { color: red }</style><script>var x = "<p>not text</p>";</script></head>
<body><h1>Welcome to the Example Page</h1>
<p>This is a paragraph   of <b>bold</b>
text &amp; an entity.</p>
<div class="content"><h2>Section 1</h2><p>This is the first section.<br>Next line.</p></div>
<pre>def f():
    return 1</pre>
<!-- a comment --></body></html>"""


def test_html_text_is_what_a_reader_sees():
    assert html_to_text(PAGE) == (
        "Example HTML Page\nWelcome to the Example Page\nThis is a paragraph of bold text & an entity.\n"
        "Section 1\nThis is the first section.\nNext line.\ndef f():\n    return 1")


def test_prepare_html_pages_into_text_records(tmp_path):
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "a.html").write_text(PAGE, encoding="utf-8")
    (tmp_path / "pages" / "b.htm").write_text("<p>Second   page.</p>", encoding="utf-8")
    (tmp_path / "pages" / "c.html").write_text("<p>Second page.</p>", encoding="utf-8")  # duplicate of b
    (tmp_path / "pages" / "empty.html").write_text("<script>only()</script>", encoding="utf-8")
    report = prepare([tmp_path / "pages"], tmp_path / "out.jsonl")
    records = read_jsonl(tmp_path / "out.jsonl")
    assert [r["text"][:17] for r in records] == ["Example HTML Page", "Second page."]
    assert report.written == 2 and report.dropped == {DUPLICATE: 1, EMPTY: 1}
    assert report.dropped_sources[DUPLICATE] == ["c.html"]


CSV = '''id,question,answer,notes
1,What is 2+2?,4,
2,"Say ""hi""","Hi, there!
Second line.",x
3,What is 2+2?,4,dup
4,Who are you?,"As an AI language model, I am a program.",
5,Empty answer?,,
'''


def test_prepare_a_csv_column(tmp_path):
    (tmp_path / "qa.csv").write_text(CSV, encoding="utf-8")
    report = prepare([tmp_path / "qa.csv"], tmp_path / "out.jsonl", column="answer")
    assert [r["text"] for r in read_jsonl(tmp_path / "out.jsonl")] == [
        "4", "Hi, there!\nSecond line.", "As an AI language model, I am a program."]
    assert report.dropped == {DUPLICATE: 1, EMPTY: 1}
    assert report.dropped_sources[EMPTY] == ["qa.csv:7"]  # the row's line in the file


def test_prepare_names_a_csv_record_by_its_first_line_and_skips_blank_lines(tmp_path):
    """The data layer's rule (csv_records): a record that spans lines is named by the line it starts on (it was named
    by its last), and a whitespace-only line is no row (it was read as a row and reported as dropped, empty)."""
    (tmp_path / "x.csv").write_text('id,text\n1,"a\nb"\n   \n2,"a\nb"\n\n3,\n', encoding="utf-8")
    report = prepare([tmp_path / "x.csv"], tmp_path / "out.jsonl", column="text")
    assert report.rows_read == 3
    assert report.dropped_sources == {DUPLICATE: ["x.csv:5"], EMPTY: ["x.csv:8"]}


def test_prepare_refuses_a_csv_record_with_more_fields_than_the_header(tmp_path):
    """An unquoted comma in a text: its tail went under no column and was silently left out of the output."""
    (tmp_path / "x.csv").write_text("q;a\nhi;there\nyes;no; and more\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"x\.csv:3: 3 fields, but the header has 2"):
        prepare([tmp_path / "x.csv"], tmp_path / "out.jsonl", column="a")


def test_prepare_a_csv_column_pair_with_the_slop_filter(tmp_path):
    (tmp_path / "qa.csv").write_text(CSV, encoding="utf-8")
    report = prepare([tmp_path / "qa.csv"], tmp_path / "out.jsonl", instruction_column="question",
                     output_column="answer", filter_slop=True)
    records = read_jsonl(tmp_path / "out.jsonl")
    assert records[0] == {"instruction": "What is 2+2?", "output": "4"}
    assert len(records) == 2
    assert report.dropped == {DUPLICATE: 1, EMPTY: 1, SLOP: 1}
    assert report.slop_phrases == {"as an ai language model": 1}
    assert any("slop" in line for line in report.lines())


def test_no_dedup_keeps_duplicates(tmp_path):
    (tmp_path / "qa.csv").write_text(CSV, encoding="utf-8")
    report = prepare([tmp_path / "qa.csv"], tmp_path / "out.jsonl", column="answer", dedup=False)
    assert report.written == 4 and DUPLICATE not in report.dropped


def test_prepare_leaves_a_file_named_like_its_temporary_one_alone(tmp_path):
    """prepare wrote OUT.jsonl through OUT.jsonl.tmp: a user's file of that name was replaced and renamed away, and a
    link there was written through to the file it names. The temporary file is now one of its own."""
    (tmp_path / "qa.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "out.jsonl.tmp").write_text("mine\n")
    (tmp_path / "notes.txt").write_text("precious\n")
    (tmp_path / "out2.jsonl.tmp").symlink_to(tmp_path / "notes.txt")
    for out in ("out.jsonl", "out2.jsonl"):
        assert prepare([tmp_path / "qa.csv"], tmp_path / out, column="answer").written == 3
    assert (tmp_path / "out.jsonl.tmp").read_text() == "mine\n"
    assert (tmp_path / "notes.txt").read_text() == "precious\n" and (tmp_path / "out2.jsonl.tmp").is_symlink()
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3


def test_csv_column_errors_name_the_file_and_columns(tmp_path):
    (tmp_path / "qa.csv").write_text(CSV, encoding="utf-8")
    with pytest.raises(UserError) as e:
        prepare([tmp_path / "qa.csv"], tmp_path / "out.jsonl", column="respone")
    assert "qa.csv" in str(e.value) and "question, answer" in str(e.value)
    with pytest.raises(UserError, match="--column") as e:
        prepare([tmp_path / "qa.csv"], tmp_path / "out.jsonl")
    # a CSV of questions and answers: the pair of flags that makes prompts and responses, not only --column (text)
    assert "--instruction-column C --output-column C" in e.value.fix
    with pytest.raises(UserError, match="go together"):
        prepare([tmp_path / "qa.csv"], tmp_path / "out.jsonl", instruction_column="question")
    with pytest.raises(DataError, match="no such file"):
        prepare([tmp_path / "missing.csv"], tmp_path / "out.jsonl", column="answer")


MYSQL_DUMP = r"""-- MySQL dump 10.13
/*!40101 SET NAMES utf8mb4 */;
DROP TABLE IF EXISTS `posts`;
CREATE TABLE `posts` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `title` varchar(200) DEFAULT 'untitled, really',
  `body` text,
  PRIMARY KEY (`id`),
  KEY `title_idx` (`title`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
LOCK TABLES `posts` WRITE;
INSERT INTO `posts` VALUES (1,'First','It\'s a \"quoted\" word;\nand a second line'),(2,'Second',NULL),
(3,'Third',_utf8mb4'Parens (inside), commas, and; semicolons');
INSERT INTO `posts` VALUES (4,'Dup','Parens (inside),   commas, and; semicolons');
UNLOCK TABLES;
"""

PG_DUMP = """SET standard_conforming_strings = on;
INSERT INTO public.qa (question, answer) VALUES ('Path?', 'C:\\temp\\new'), ('It''s?', 'Yes, it''s.');
INSERT INTO public.qa (question, answer) VALUES ('Esc?', E'tab\\there') ON CONFLICT DO NOTHING;
"""


def test_sql_insert_parser_handles_quotes_escapes_and_create_table_columns():
    rows = insert_rows(MYSQL_DUMP, "dump.sql")
    assert [r.values for r in rows] == [
        ("1", "First", 'It\'s a "quoted" word;\nand a second line'), ("2", "Second", None),
        ("3", "Third", "Parens (inside), commas, and; semicolons"),
        ("4", "Dup", "Parens (inside),   commas, and; semicolons")]
    assert rows[0].columns == ("id", "title", "body") and rows[0].table == "posts"
    assert rows[2].line == 13
    pg = insert_rows(PG_DUMP, "pg.sql")
    assert [r.values for r in pg] == [("Path?", "C:\\temp\\new"), ("It's?", "Yes, it's."), ("Esc?", "tab\there")]


def test_prepare_an_sql_dump(tmp_path):
    (tmp_path / "dump.sql").write_text(MYSQL_DUMP, encoding="utf-8")
    report = prepare([tmp_path / "dump.sql"], tmp_path / "out.jsonl", column="body")
    assert [r["text"] for r in read_jsonl(tmp_path / "out.jsonl")] == [
        'It\'s a "quoted" word;\nand a second line', "Parens (inside), commas, and; semicolons"]
    assert report.dropped == {EMPTY: 1, DUPLICATE: 1}
    (tmp_path / "pg.sql").write_text(PG_DUMP, encoding="utf-8")
    prepare([tmp_path / "pg.sql"], tmp_path / "pairs.jsonl", instruction_column="question", output_column="answer")
    assert read_jsonl(tmp_path / "pairs.jsonl")[1] == {"instruction": "It's?", "output": "Yes, it's."}


def test_sql_without_inserts_says_how_to_dump_again(tmp_path):
    (tmp_path / "copy.sql").write_text("COPY public.qa (q, a) FROM stdin;\nx\ty\n\\.\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        prepare([tmp_path / "copy.sql"], tmp_path / "out.jsonl", column="q")
    assert "--inserts" in str(e.value)


def test_unterminated_string_names_the_line(tmp_path):
    (tmp_path / "bad.sql").write_text("INSERT INTO t VALUES (1, 'ok');\nINSERT INTO t VALUES (2, 'oops);\n",
                                      encoding="utf-8")
    with pytest.raises(DataError, match="bad.sql:2"):
        prepare([tmp_path / "bad.sql"], tmp_path / "out.jsonl", column="2")


def test_everything_dropped_is_an_error_with_the_report(tmp_path):
    (tmp_path / "a.txt").write_text("As an AI language model, I can't.", encoding="utf-8")
    with pytest.raises(DataError) as e:
        prepare([tmp_path / "a.txt"], tmp_path / "out.jsonl", filter_slop=True)
    assert "slop phrase" in str(e.value)
    assert not (tmp_path / "out.jsonl").exists()
