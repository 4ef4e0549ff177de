"""Reading files, detecting the format, and every broken input naming its file and line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from conftest import HUB_COMMIT, cache_hub_dataset
from engine.data import read_rows
from engine.errors import DataError

ALPACA = [{"instruction": "What color is a lemon?", "input": "", "output": "Yellow."},
          {"instruction": "Plural of the word.", "input": "box", "output": "boxes"}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------- formats and detection

@pytest.mark.parametrize("row,fmt", [
    ({"instruction": "I", "input": "", "output": "O"}, "alpaca"),
    ({"instruction": "I", "output": "O"}, "alpaca"),  # input is optional
    ({"messages": [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]}, "chat"),
    ({"conversations": [{"from": "human", "value": "U"}, {"from": "gpt", "value": "A"}]}, "chat"),
    ({"prompt": "P", "completion": "C"}, "completion"),
    ({"text": "T"}, "text"),
    ({"text": "T", "messages": [{"role": "user", "content": "U"}]}, "chat"),  # a stray text column is metadata
])
def test_format_detection(tmp_path, row, fmt):
    rows, found, sources = read_rows(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert found == fmt and sources == [f"{tmp_path / 'd.jsonl'}:1"]


def test_alpaca_rows_are_normalised(tmp_path):
    rows, fmt, _ = read_rows(write_jsonl(tmp_path / "d.jsonl", [{"instruction": "I", "output": 42, "system": "S"}]))
    assert rows == [{"instruction": "I", "input": "", "output": "42", "system": "S"}]


def test_sharegpt_roles_are_mapped(tmp_path):
    row = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "U"},
                             {"from": "gpt", "value": "A"}]}
    rows, fmt, _ = read_rows(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert rows[0]["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                                   {"role": "assistant", "content": "A"}]


def test_a_chat_rows_system_field_is_its_first_message(tmp_path):
    """ShareGPT exports often carry the system prompt beside the turns; read as absent, the row trained without it."""
    turns = [{"from": "human", "value": "U"}, {"from": "gpt", "value": "A"}]
    rows, fmt, _ = read_rows(write_jsonl(tmp_path / "d.jsonl", [{"system": "Be terse.", "conversations": turns},
                                                                 {"system": "", "conversations": turns}]))
    assert fmt == "chat"
    assert rows[0]["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "U"},
                                   {"role": "assistant", "content": "A"}]
    assert rows[1]["messages"][0] == {"role": "user", "content": "U"}
    # the same prompt twice is one system message; two different ones are the user's to settle
    same = {"system": "S", "messages": [{"role": "system", "content": "S"}, *rows[0]["messages"][1:]]}
    assert read_rows(write_jsonl(tmp_path / "s.jsonl", [same]))[0][0]["messages"][0] == {"role": "system",
                                                                                           "content": "S"}
    other = {"system": "T", "messages": same["messages"]}
    with pytest.raises(DataError, match=r"o\.jsonl:1: a 'system' field and a system message that differ"):
        read_rows(write_jsonl(tmp_path / "o.jsonl", [other]))
    with pytest.raises(DataError, match=r"did you mean 'system'"):
        read_rows(write_jsonl(tmp_path / "m.jsonl", [{"System": "S", "messages": same["messages"][1:]}]))


def test_an_alpaca_rows_blank_system_field_is_none(tmp_path):
    """A system field of spaces is no system prompt, as a chat row's blank system message is none: kept, it became a
    system block of spaces, which a template without a system role refused and which inference never feeds."""
    row = {"instruction": "U", "input": "", "output": "A"}
    rows, fmt, _ = read_rows(write_jsonl(tmp_path / "d.jsonl", [{**row, "system": " \n"}, {**row, "system": "S"}]))
    assert (fmt, rows) == ("alpaca", [row, {**row, "system": "S"}])


def test_content_parts_keep_their_text(tmp_path):
    """Joined with nothing between them, as the templates that read parts join them (Gemma 3, Llama 3.2 Vision,
    Qwen2-VL); where a message has several, a note says so, as servers differ (vLLM joins with a newline)."""
    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                        {"role": "assistant", "content": [{"type": "text", "text": "A"}]}]}
    notes: list[str] = []
    rows, _, _ = read_rows(write_jsonl(tmp_path / "d.jsonl", [row]), notes=notes)
    assert rows[0]["messages"] == [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "A"}]
    assert [n for n in notes if n.startswith("messages with several text parts: joined with nothing")] == notes != []
    notes.clear()
    rows, _, _ = read_rows(write_jsonl(tmp_path / "one.jsonl", [{"messages": [
        row["messages"][0] | {"content": []}, row["messages"][1]]}]), notes=notes)
    assert notes == []   # one part: nothing to join
    assert rows[0]["messages"][0]["content"] == ""   # no parts: no text, as null


@pytest.mark.parametrize("part,match", [
    ({"type": "image", "image": "cat.png"}, r'messages\[0\]\.content\[0\] is an image part of type "image"'),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}, r'messages\[0\]\.content\[0\] is an image part of type "image_url"'),
    ({"type": "input_text", "text": "What is it?"}, r'messages\[0\]\.content\[0\] is a part of type "input_text"'),
    ({"type": "text", "text": None}, r"missing field 'messages\[0\]\.content\[0\]\.text'"),
    ({"type": "text", "text": ["a"]}, r"field 'messages\[0\]\.content\[0\]\.text' must be text, got a list"),
])
def test_a_content_part_that_is_not_text_is_refused_not_left_out(tmp_path, part, match):
    """An image part was left out: the answer trained on "what is in this picture?" with no picture; a part of another
    type ("input_text") read as no text at all, an empty question or an empty answer."""
    good = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}
    bad = {"messages": [{"role": "user", "content": [part, {"type": "text", "text": "What is it?"}]},
                        {"role": "assistant", "content": "A cat."}]}
    path = write_jsonl(tmp_path / "d.jsonl", [good, bad])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: {match}"):
        read_rows(path)


def test_a_text_part_without_its_type_reads_alike_in_every_file_type(tmp_path):
    """A part {"text": ...} with no "type" is text in JSON Lines; Parquet (and a hub dataset) store it beside typed
    parts as {"type": null, "text": ...}, which was refused as "a part of type null": the same rows, read in one file
    type and refused in the other. A part holding something else beside a null type is still refused."""
    import pandas as pd

    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                        {"role": "assistant", "content": [{"text": "Hello."}]}]}
    pd.DataFrame([row]).to_parquet(tmp_path / "d.parquet")
    read = read_rows(write_jsonl(tmp_path / "d.jsonl", [row]))[0]
    assert read_rows(tmp_path / "d.parquet")[0] == read == [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}]
    other = {"messages": [row["messages"][0], {"role": "assistant", "content": [{"type": None, "text": None, "image": "cat.png"}]}]}
    with pytest.raises(DataError, match=r"messages\[1\]\.content\[0\] is a part of type null"):
        read_rows(write_jsonl(tmp_path / "n.jsonl", [other]))


def test_sharegpt_parts_and_keys_are_named_as_written(tmp_path):
    row = {"conversations": [{"from": "human", "value": [{"type": "image"}]}, {"from": "gpt", "value": "A"}]}
    with pytest.raises(DataError, match=r"d\.jsonl:1: conversations\[0\]\.value\[0\] is an image part"):
        read_rows(write_jsonl(tmp_path / "d.jsonl", [row]))


@pytest.mark.parametrize("alias", ["model", "bot"])
def test_assistant_role_aliases(tmp_path, alias):
    """Gemma writes the assistant's turns as "model", some chat exports as "bot": both were refused."""
    row = {"conversations": [{"from": "human", "value": "U"}, {"from": alias, "value": "A"}]}
    rows, _, _ = read_rows(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert rows[0]["messages"] == [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]


def test_a_messages_column_of_json_text_is_read_in_csv_and_parquet(tmp_path):
    """CSV has no lists, and many Parquet exports store the conversation as JSON text: it was refused as "must be a
    list of messages, got text"."""
    pd = pytest.importorskip("pandas")
    turns = [{"role": "user", "content": "U, with a comma"}, {"role": "assistant", "content": "A"}]
    frame = pd.DataFrame({"messages": [json.dumps(turns)], "id": [7]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    for name, where in (("d.csv", ":2"), ("d.parquet", ": row 1")):
        rows, fmt, sources = read_rows(tmp_path / name)
        assert (fmt, rows, sources) == ("chat", [{"messages": turns}], [f"{tmp_path / name}{where}"])
    frame = pd.DataFrame({"messages": ["[not json", json.dumps([1])]})
    frame.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DataError, match=r"b\.csv:2: field 'messages' must be a list of messages, got text"):
        read_rows(tmp_path / "b.csv")


def test_trls_conversational_prompt_completion_is_one_conversation(tmp_path):
    """{"prompt": [messages], "completion": [messages]} (TRL's conversational format) was read as the completion format
    and refused ("field 'prompt' must be text, got a list"). It is the prompt's turns, then the completion's; an answer
    in the prompt is context (weight 0: TRL trains the completion only)."""
    row = {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                      {"role": "assistant", "content": "A"}, {"role": "user", "content": "V"}],
           "completion": [{"role": "assistant", "content": "B"}]}
    rows, fmt, _ = read_rows(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert fmt == "chat" and rows[0]["messages"] == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "U"},
        {"role": "assistant", "content": "A", "weight": 0}, {"role": "user", "content": "V"},
        {"role": "assistant", "content": "B"}]
    path = write_jsonl(tmp_path / "b.jsonl", [row, {"prompt": row["prompt"], "completion": "B"}])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: field 'completion' must be a list of messages"):
        read_rows(path)
    with pytest.raises(DataError, match=r"b\.jsonl:1: field 'prompt' must be text, got a list"):
        read_rows(path, "completion")   # the standard prompt-completion format is text
    plain = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "P", "completion": "C"}])
    assert read_rows(plain)[:2] == ([{"prompt": "P", "completion": "C"}], "completion")


def test_a_completion_whose_text_is_a_json_list_stays_the_completion_format(tmp_path):
    """A prompt-completion row whose prompt is text that parses as a JSON list ("[3, 1, 2]", a sorting task) is the
    completion format: read as TRL's conversational rows, the whole file was refused ("prompt[0] must be an object
    with role and content"). Only a list of messages makes a row conversational."""
    rows = [{"prompt": "[3, 1, 2]", "completion": "[1, 2, 3]"}, {"prompt": "[]", "completion": "[]"}]
    read, fmt, _ = read_rows(write_jsonl(tmp_path / "d.jsonl", rows))
    assert (fmt, read) == ("completion", rows)


@pytest.mark.parametrize("key", ["reasoning_content", "thinking", "reasoning"])
def test_a_messages_reasoning_field_is_refused_not_left_out(tmp_path, key):
    """Qwen3's and DeepSeek's templates read `reasoning_content`, gpt-oss's `thinking`: read as absent, the answer
    trained without the reasoning it was written after."""
    turns = [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A", key: "Let me think."}]
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": turns}])
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: messages\[1\] has '{key}': it is not read"):
        read_rows(path)
    turns[1][key] = None   # Arrow's missing value in a Parquet export: nothing to read
    assert read_rows(write_jsonl(tmp_path / "n.jsonl", [{"messages": turns}]))[0][0]["messages"][1] == {
        "role": "assistant", "content": "A"}


def test_a_messages_weight_of_0_is_kept_and_others_are_refused(tmp_path):
    """axolotl's `weight` per message: 0 is not trained (engine.data.template reads it); it was ignored and the turn
    trained. A fraction cannot be honoured: refused. 1 on a turn that is no answer (axolotl's chat_template trains
    it) is read, and the report says it is not trained."""
    turns = [{"from": "system", "value": "S", "weight": 0}, {"from": "human", "value": "U", "weight": 0},
             {"from": "gpt", "value": "A", "weight": 0}, {"from": "human", "value": "V", "weight": None},
             {"from": "gpt", "value": "B", "weight": 1}]
    rows, _, _ = read_rows(write_jsonl(tmp_path / "d.jsonl", [{"conversations": turns}]))
    assert rows[0]["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                                   {"role": "assistant", "content": "A", "weight": 0},
                                   {"role": "user", "content": "V"}, {"role": "assistant", "content": "B"}]
    for i, weight, match in [(4, 0.5, r"conversations\[4\]\.weight is 0\.5; lorapilot reads 0 .* or 1"),
                             (4, "0", r'conversations\[4\]\.weight is "0"')]:
        bad = [dict(t) for t in turns]
        bad[i]["weight"] = weight
        path = write_jsonl(tmp_path / "b.jsonl", [{"conversations": turns}, {"conversations": bad}])
        with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: {match}"):
            read_rows(path)
    notes: list[str] = []
    on_user = [*turns[:1], {**turns[1], "weight": 1.0}, *turns[2:]]
    assert read_rows(write_jsonl(tmp_path / "u.jsonl", [{"conversations": on_user}]), notes=notes)[0] == rows
    assert notes == ["user and system turns with weight 1 (or training: true) in the data are not trained: lorapilot trains the answers "
                     "only (axolotl's chat_template would train them)"]


def test_a_messages_training_false_is_weight_0_and_train_detail_is_refused(tmp_path):
    """axolotl's other per-message keys: `training: false` (its chat_template's message_field_training) was ignored and
    the answer trained; now it is an answer of weight 0, one rule. A non-boolean, or a `weight` it contradicts, is
    refused; `train_detail` (character spans to train) cannot be honoured here: refused, naming file, line and key."""
    turns = [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A", "training": False},
             {"role": "user", "content": "V", "training": None}, {"role": "assistant", "content": "B", "training": True}]
    rows, _, _ = read_rows(write_jsonl(tmp_path / "d.jsonl", [{"messages": turns}]))
    assert rows[0]["messages"] == [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A", "weight": 0},
                                   {"role": "user", "content": "V"}, {"role": "assistant", "content": "B"}]
    span = [{"begin_offset": 0, "end_offset": 1, "train": True}]
    for i, field, value, match in [
            (1, "training", "no", r'messages\[1\]\.training is "no"; lorapilot reads true .* or false'),
            (1, "weight", 1, r"messages\[1\] has weight 1 and training false"),
            (3, "train_detail", span, r"messages\[3\]\.train_detail: character spans to train are not read")]:
        bad = [dict(t) for t in turns]
        bad[i][field] = value
        path = write_jsonl(tmp_path / "b.jsonl", [{"messages": turns}, {"messages": bad}])
        with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: {match}"):
            read_rows(path)


def test_explicit_format_is_used(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "T", "prompt": "P", "completion": "C"}])
    assert read_rows(path)[1] == "completion"
    assert read_rows(path, "text")[1] == "text"


def test_unicode_line_separators_inside_a_jsonl_string_are_text(tmp_path):
    """json.dumps(ensure_ascii=False) writes U+2028, U+2029 and U+0085 raw inside strings (scraped web text has them):
    str.splitlines split the row there and refused a valid file ("Unterminated string")."""
    rows = [{"prompt": "a\u2028b\u2029c", "completion": "d\x85e"}, {"prompt": "p", "completion": "q"}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert read_rows(path) == (rows, "completion", [f"{path}:1", f"{path}:2"])


def test_blank_lines_are_skipped_but_counted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n\n  \n" + json.dumps(ALPACA[1]) + "\n", encoding="utf-8")
    rows, _, sources = read_rows(path)
    assert len(rows) == 2 and sources == [f"{path}:1", f"{path}:4"]


def test_json_array_and_json_lines_named_json(tmp_path):
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps(ALPACA, indent=2), encoding="utf-8")
    rows, fmt, sources = read_rows(arr)
    second = json.dumps(ALPACA, indent=2).split("\n").index("  {", 2) + 1   # the line the second element starts on
    assert fmt == "alpaca" and len(rows) == 2 and sources == [f"{arr}:2", f"{arr}:{second}"]
    lines = write_jsonl(tmp_path / "b.json", ALPACA)
    assert read_rows(lines)[2] == [f"{lines}:1", f"{lines}:2"]
    wrapped = tmp_path / "c.json"
    wrapped.write_text(json.dumps({"data": ALPACA}), encoding="utf-8")
    assert len(read_rows(wrapped)[0]) == 2


def test_a_json_arrays_rows_are_named_by_the_line_they_start_on(tmp_path):
    """Not by a 0-based index ("a.json[1]") that read as a line: a user opens the file at the line named. Strings
    holding brackets, commas and escaped quotes, nested lists, a wrapping object with other keys first, a number
    json converts: each element's start is found as the json module reads it."""
    text = ('{"meta": {"n": [1, {"x": "]"}]}, "note": "a, b",\n "data": [\n'
            '  {"text": "one ], [ \\" {"},\n\n'
            '  {"text": "two", "tags": [[1, 2], {"k": [3]}], "id": 1e400},\n'
            '  {"text": "three"}\n]}\n')
    path = tmp_path / "a.json"
    path.write_text(text, encoding="utf-8")
    rows, _, sources = read_rows(path)
    assert [r["text"] for r in rows] == ["one ], [ \" {", "two", "three"]
    assert sources == [f"{path}:3", f"{path}:5", f"{path}:6"]


def test_json_array_elements_on_one_line_are_counted_from_1(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"text": "a"}, {"text": "b"}, {"text": ["c"]}]', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: element 3: field 'text' must be text, got a list"):
        read_rows(path)


@pytest.mark.parametrize("element,word", [("null", "null"), ("7", "a number"), ('"hi"', "text"),
                                          ("[1]", "a list"), ("true", "true")])
def test_a_json_element_that_is_no_object_says_so_in_jsons_words(tmp_path, element, word):
    """"got NoneType", "got int": Python's names, not what the file says."""
    path = tmp_path / "a.json"
    path.write_text('[\n {"text": "a"},\n %s\n]\n' % element, encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: expected a JSON object, got {word}$"):
        read_rows(path)


def test_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('instruction,input,output\nWhat is 6 plus 28?,,34\n"Say ""hi""",x,"hi,\nthere"\n',
                    encoding="utf-8")
    rows, fmt, sources = read_rows(path)
    assert fmt == "alpaca" and sources == [f"{path}:2", f"{path}:3"]
    assert rows[0] == {"instruction": "What is 6 plus 28?", "input": "", "output": "34"}
    assert rows[1] == {"instruction": 'Say "hi"', "input": "x", "output": "hi,\nthere"}


def test_a_tsv_file_is_split_on_tabs_every_cell_as_written(tmp_path):
    """dataset.path of a .tsv file: refused as an unsupported file type (only `lorapilot prepare` read TSV). Read as
    a CSV file split by tabs: quoting, the lines records start on, and every cell as the text written (007, NA)."""
    path = tmp_path / "d.tsv"
    path.write_text('instruction\tinput\toutput\nWhat is 6, plus 28?\t\t034\n\n"Say ""hi"""\tx\t"hi\tthere,\nyou"\n'
                    "Answer?\t\tNA\n", encoding="utf-8")
    rows, fmt, sources = read_rows(path)
    assert fmt == "alpaca" and sources == [f"{path}:2", f"{path}:4", f"{path}:6"]
    assert rows == [{"instruction": "What is 6, plus 28?", "input": "", "output": "034"},
                    {"instruction": 'Say "hi"', "input": "x", "output": "hi\tthere,\nyou"},
                    {"instruction": "Answer?", "input": "", "output": "NA"}]
    # a folder's .tsv files are data files too, and the estimate counts its records as the reader does
    from engine.estimate.dataset_size import count_examples

    assert read_rows(tmp_path)[0] == rows and count_examples(str(path)) == 3
    path.write_text("prompt\tcompletion\nQ\tA\textra\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: 3 fields, but the header has 2"):
        read_rows(path)


@pytest.mark.parametrize("name", ["U.CSV", "U.TSV"])
def test_an_upper_case_suffix_is_read_as_its_lower_case_one(tmp_path, name):
    """A file named .CSV reached datasets as load_dataset("CSV"): refused with datasets' list of every cached
    config (thousands of names), not read."""
    path = tmp_path / name
    sep = "\t" if name.endswith("TSV") else ","
    path.write_text(f"prompt{sep}completion\nZip?{sep}00501\n", encoding="utf-8")
    assert read_rows(path)[0] == [{"prompt": "Zip?", "completion": "00501"}]


@pytest.mark.parametrize(("name", "text", "said", "fix"), [
    ("d.csv", "instruction;input;output\nWhat is 6 plus 28?;;34\n", "semicolons", "commas"),
    ("d.csv", "prompt\tcompletion\nQ, then\tA\n", "tabs", ".tsv"),
    ("d.tsv", "prompt,completion\nQ,A\n", "commas", ".csv"),
    ("d.csv", "text;source\nOnce upon a time, the sky was blue.;book\n", "semicolons", "commas"),
])
def test_a_header_of_one_column_holding_another_separator_is_refused(tmp_path, name, text, said, fix):
    """A spreadsheet saved with semicolons, or tab-separated text named .csv: every row was one column named like the
    whole header ("instruction;input;output"), refused as "no known format", or, with a comma in a row, as a row
    with more fields than the header (the fix said to quote commas). Said as it is, naming the file and its fix."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: the header row is one column, .*: the fields "
                                        rf"are separated by {said}") as e:
        read_rows(path)
    assert fix in str(e.value.fix)
    with pytest.raises(DataError, match="the header row is one column"):
        read_rows(path, "text")   # a format set by hand: not one giant text column either
    # a one-column file is still one column
    path.write_text("text\nOnce upon a time; the end.\n", encoding="utf-8")
    assert read_rows(path)[0] == [{"text": "Once upon a time; the end."}]


def test_a_csv_cell_is_the_text_written(tmp_path):
    """pandas typed the column: the answer "007" trained as "7.0", "3.10" as "3.1", and the words None and NA as empty
    answers. An empty cell is still missing (a required field is refused)."""
    path = tmp_path / "d.csv"
    path.write_text("prompt,completion\nCode?,007\nVersion?,3.10\nAnything?,None\nSay NA,NA\nnull,nan\nEmpty,\n",
                    encoding="utf-8")
    rows, _, _ = read_rows(path)
    assert [r["completion"] for r in rows] == ["007", "3.10", "None", "NA", "nan", ""]
    assert rows[4]["prompt"] == "null"
    path.write_text("instruction,output\nQ,1\n,2\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: missing field 'instruction'"):
        read_rows(path)


def test_a_csv_error_names_the_line_its_record_starts_on(tmp_path):
    # A quoted field spanning lines, blank and whitespace-only lines: the record's index (2) is not its line (7).
    path = tmp_path / "cap.csv"
    path.write_text('instruction,input,output\n\n"two\nlines",,a\n   \n"x\r\ny",,b\r\nbad,,"[1]"\n\n',
                    encoding="utf-8")
    assert read_rows(path)[2] == [f"{path}:3", f"{path}:6", f"{path}:8"]
    path.write_text('text\n"a\nb"\n\n', encoding="utf-8")
    rows, _, sources = read_rows(path)
    assert rows == [{"text": "a\nb"}] and sources == [f"{path}:2"]
    path.write_text('messages\n"multi\nline"\n"[1, 2]"\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: field 'messages' must be a list"):
        read_rows(path)


def test_a_csv_row_with_more_fields_than_the_header_is_refused_not_shifted(tmp_path):
    # pandas took the first row's extra fields as its index: the row read instruction='O', input='b', output='c'.
    path = tmp_path / "d.csv"
    path.write_text("instruction,input,output\nI,,O,b,c\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: 5 fields, but the header has 3"):
        read_rows(path)


def test_a_csv_with_a_header_only_or_an_unclosed_quote_says_so(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("instruction,input,output\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"the file has no rows \(a header only\)$"):
        read_rows(path)
    path.write_text('instruction,input,output\n"I,,O\nJ,,O\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"cannot read as CSV: .*EOF inside string"):  # not 'An error occurred'
        read_rows(path)


def test_nan_is_no_text_not_the_text_nan(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "P", "completion": NaN}\n', encoding="utf-8")
    assert read_rows(path)[0] == [{"prompt": "P", "completion": ""}]
    path.write_text('{"instruction": "I", "output": "O"}\n{"instruction": NaN, "output": "O"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2: missing field 'instruction'"):
        read_rows(path)


def test_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "d.parquet"
    msgs = [[{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]]
    pd.DataFrame({"messages": msgs}).to_parquet(path)
    rows, fmt, sources = read_rows(path)
    assert fmt == "chat" and rows[0]["messages"][1] == {"role": "assistant", "content": "A"}
    assert sources == [f"{path}: row 1"]   # counted from 1: no "[0]" that reads as a line


def test_directory_reads_every_file_in_order(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", ALPACA[1:])
    write_jsonl(tmp_path / "a.jsonl", ALPACA[:1])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.csv").write_text("instruction,input,output\nI,,O\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    (tmp_path / ".hidden.jsonl").write_text("not json", encoding="utf-8")
    rows, fmt, sources = read_rows(tmp_path)
    assert fmt == "alpaca" and len(rows) == 3
    assert sources == [f"{tmp_path / 'a.jsonl'}:1", f"{tmp_path / 'b.jsonl'}:1", f"{tmp_path / 'sub' / 'c.csv'}:2"]


# ---------------------------------------------------------------- broken input: DataError naming file and line

def test_invalid_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n" + '{"instruction": "x", "output": \n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:2: invalid JSON: "):
        read_rows(path)



def test_an_unclosed_json_line_names_the_column_where_it_broke(tmp_path):
    """A line missing its closing brace was reported at column 1: the parser saw the line's own newline and counted
    a second line. The column is where the line ends, where the brace goes."""
    path = tmp_path / "d.jsonl"
    broken = '{"instruction": "x", "output": "y"'
    path.write_text(json.dumps(ALPACA[0]) + "\n" + broken + "\n" + json.dumps(ALPACA[0]) + "\n", encoding="utf-8")
    reason = rf"invalid JSON: Expecting ',' delimiter \(column {len(broken) + 1}\)\n"
    with pytest.raises(DataError, match=rf"^{path}:2: {reason}"):
        read_rows(path)


def test_an_unterminated_string_is_said_where_it_starts_in_words(tmp_path):
    """A JSONL line 3 cut inside a string read "Unterminated string starting at (column 17)"."""
    path = tmp_path / "d.jsonl"
    lines = [json.dumps(ALPACA[0])] * 2 + ['{"instruction": "oops'] + [json.dumps(ALPACA[0])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:3: invalid JSON: Unterminated string starting at column 17\n"):
        read_rows(path)


def test_invalid_json_array_names_its_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n {"text": "a"},\n {"text": "b",}\n]\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:3: invalid JSON"):
        read_rows(path)


def test_a_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n["text", "b"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:2: expected a JSON object, got a list"):
        read_rows(path)


# Inputs the json module fails on with errors that name nothing (issue 24, item 11).
DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "9" * 5000


@pytest.mark.parametrize("name,content,where,match", [
    ("d.jsonl", '{"text": "a"}\n{"text": %s}\n' % DEEP, ":2", "nested too deeply"),
    ("d.jsonl", '{"text": "a"}\n{"text": "b", "id": %s}\n' % HUGE, ":2", "a number with 5000 digits"),
    ("d.jsonl", '{"text": "a"}\n{"text": "\\ud800"}\n', ":2", "lone surrogate"),
    ("d.json", '[{"text": "a"},\n {"text": %s}]\n' % DEEP, ":2", "nested too deeply"),
    ("d.json", '[{"text": "a"},\n {"text": "b", "id": -%s}]\n' % HUGE, ":2", "a number with 5000 digits"),
    ("d.json", '[{"text": "a"},\n {"text": "x\\udfff"}]\n', ":2", "lone surrogate"),
], ids=["jsonl deep", "jsonl huge int", "jsonl surrogate", "json deep", "json huge int", "json surrogate"])
def test_json_the_parser_chokes_on_names_file_and_line(tmp_path, name, content, where, match):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path) + where)}: .*{match}"):
        read_rows(path)


def test_a_surrogate_pair_is_fine(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "\\ud83d\\ude00"}\n', encoding="utf-8")
    assert read_rows(path)[0] == [{"text": "\U0001F600"}]


@pytest.mark.parametrize("name", ["d.jsonl", "d.json", "d.csv", "d.parquet"])
def test_unreadable_file_is_named(tmp_path, monkeypatch, name):
    path = tmp_path / name
    path.write_text('{"text": "a"}\n', encoding="utf-8")
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads any file: make the read itself fail as it would for another user
        real_open = open

        def deny(file, *a, **kw):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *a, **kw)
        monkeypatch.setattr("builtins.open", deny)
        monkeypatch.setattr(Path, "read_bytes", lambda self: deny(self, "rb").read())
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: permission denied"):
        read_rows(path)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_io_error_is_named(tmp_path):
    # Reading /proc/self/mem from offset 0 fails with EIO: a real I/O error, as from a failing disk.
    path = tmp_path / "d.jsonl"
    path.symlink_to("/proc/self/mem")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: cannot read: Input/output error"):
        read_rows(path)


def test_unreadable_file_in_a_directory_is_named(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "a"}\n', encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": %s}\n' % DEEP, encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path / 'b.jsonl'))}:1: .*nested too deeply"):
        read_rows(tmp_path)


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"^{path}: the file is empty"):
        read_rows(path)


@pytest.mark.parametrize("name", ["d.jsonl", "d.csv", "d.json"])
def test_binary_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04\x00\x00binary\xff\xfe")
    with pytest.raises(DataError, match=rf"^{path}: not a text file"):
        read_rows(path)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "a"}\n\n' + '{"text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=rf"^{path}:3: not UTF-8 text \(byte 28\)"):
        read_rows(path)


@pytest.mark.parametrize("name", ["d.jsonl", "d.json", "d.csv"])
def test_a_bom_crlf_and_no_final_newline_read_as_the_rows_written(tmp_path, name):
    """What Windows editors and Excel write: a BOM first, CRLF line ends, no newline after the last line."""
    rows = [{"prompt": "P1", "completion": "C1"}, {"prompt": "P2", "completion": "C2 \u00e9"}]
    if name == "d.csv":
        text = "prompt,completion\r\n" + "\r\n".join(f"{r['prompt']},{r['completion']}" for r in rows)
    elif name == "d.json":
        text = "[\r\n" + ",\r\n".join(json.dumps(r) for r in rows) + "\r\n]"
    else:
        text = "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    first = 1 if name == "d.jsonl" else 2
    assert read_rows(path) == (rows, "completion", [f"{path}:{first}", f"{path}:{first + 1}"])


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataError, match=rf"^{path}: cannot read as PARQUET"):
        read_rows(path)


def test_no_format_matches_lists_fields_and_formats(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "Q", "answer": "A"}])
    with pytest.raises(DataError) as e:
        read_rows(path)
    text = str(e.value)
    assert text.startswith(f"{path}:1: no known format") and "answer, question" in text
    for expected in ("alpaca (instruction, input, output)", "chat (messages", "completion (prompt, completion)",
                     "text (text)"):
        assert expected in text


@pytest.mark.parametrize("turn", [{"role": "tool", "content": "x"}, {"from": "bing", "value": "x"},
                                  {"role": None, "content": "x"}])
def test_unknown_role_names_the_line(tmp_path, turn):
    good = {"messages": [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]}
    path = write_jsonl(tmp_path / "d.jsonl", [good, good, {"messages": [{"role": "user", "content": "U"}, turn]}])
    with pytest.raises(DataError, match=rf"^{path}:3: messages\[1\] has role .*expected user, assistant or system"):
        read_rows(path)


@pytest.mark.parametrize("row,match", [
    ({"instruction": "I", "output": ["a"]}, r"field 'output' must be text, got a list"),
    ({"messages": "hello"}, r"field 'messages' must be a list"),
    ({"messages": ["hello"]}, r"messages\[0\] must be an object"),
])
def test_wrong_field_types_name_the_line(tmp_path, row, match):
    path = write_jsonl(tmp_path / "d.jsonl", [ALPACA[0] if "instruction" in row else
                                              {"messages": [{"role": "user", "content": "U"}]}, row])
    with pytest.raises(DataError, match=rf"^{path}:2: {match}"):
        read_rows(path)


@pytest.mark.parametrize("row,key,wanted", [
    ({"instruction": "Translate", "Input": "cat", "output": "chat"}, "Input", "input"),
    ({"instruction": "Translate", "inptu": "cat", "output": "chat"}, "inptu", "input"),
    ({"instruction": "Be brief", "output": "ok", "Systen": "You are terse"}, "Systen", "system"),
    ({"prompt": "P", "Completion": "C"}, "Completion", "completion"),
])
def test_a_misspelt_field_is_refused_not_left_out(tmp_path, row, key, wanted):
    """Read as absent, the misspelt field's text was silently missing from every row it was in."""
    path = write_jsonl(tmp_path / "d.jsonl", [ALPACA[0] if "prompt" not in row else {"prompt": "p", "completion": "c"},
                                              row])
    with pytest.raises(DataError) as e:
        read_rows(path)
    assert f"{path}:2" in str(e.value) and repr(key) in str(e.value) and repr(wanted) in e.value.fix


@pytest.mark.parametrize("row", [{"instruction": "I", "input": "x", "output": "O", "inputs": "meta", "id": 7},
                                 {"instruction": "I", "output": "O", "category": "qa", "source": "web"}])
def test_other_fields_are_metadata(tmp_path, row):
    rows, _, _ = read_rows(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert rows[0]["instruction"] == "I" and rows[0]["output"] == "O"


@pytest.mark.parametrize("row,match", [
    ({"tools": [{"type": "function", "function": {"name": "weather"}}]}, r"field 'tools' \(tool definitions\)"),
    ({"tools": '[{"type": "function", "function": {"name": "weather"}}]'}, r"field 'tools' \(tool definitions\)"),
    ({"tool_calls": [{"type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
     r"messages\[1\] has tool_calls"),
])
def test_tool_definitions_and_calls_are_refused_not_left_out(tmp_path, row, match):
    """Llama 3.1+, Qwen2.5/3, Granite, Mistral templates write a row's tools into the prompt and its tool calls into
    the answer: read as absent, the answers trained without the tools they were written for (a call, an empty turn)."""
    turns = [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": "Sunny."}]
    if "tool_calls" in row:
        turns[1] = {"role": "assistant", "content": None, **row}
        row = {}
    good = {"messages": turns[:1] + [{"role": "assistant", "content": "Sunny."}]}
    path = write_jsonl(tmp_path / "d.jsonl", [good, {"messages": turns, **row}])
    with pytest.raises(DataError, match=rf"^{path}:2: {match}") as e:
        read_rows(path)
    assert "tools" in e.value.fix
    for empty in ([], "", "[]", None):  # an export's empty column is no tool
        rows, _, _ = read_rows(write_jsonl(tmp_path / "e.jsonl", [{**good, "tools": empty}]))
        assert rows[0]["messages"] == good["messages"]


def test_a_message_without_content_is_refused_not_read_as_empty(tmp_path):
    """{"role": "user", "text": ...} was a user turn with no text: the answer trained on an empty question."""
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "text": "Capital of France?"},
                                                            {"role": "assistant", "content": "Paris"}]}])
    with pytest.raises(DataError, match=r"d\.jsonl:1: messages\[0\] has no content; found role, text"):
        read_rows(path)
    rows, _, _ = read_rows(write_jsonl(tmp_path / "n.jsonl", [{"messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": None}]}]))
    assert rows[0]["messages"][1]["content"] == ""  # an explicit null stays an empty turn (counted when dropped)


def test_explicit_format_that_does_not_fit(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ALPACA)
    with pytest.raises(DataError, match=rf"^{path}:1: chat format needs a 'messages'"):
        read_rows(path, "chat")


def test_mixed_formats_in_a_directory(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", ALPACA)
    write_jsonl(tmp_path / "b.jsonl", [{"text": "T"}])
    with pytest.raises(DataError, match=r"b\.jsonl: this file is in text format but .*a\.jsonl is in alpaca"):
        read_rows(tmp_path)


def _runs_under(folder: Path) -> None:
    """lorapilot's runs root under a data folder: a run with metrics, status and a checkpoint, and a sweep."""
    run = folder / "runs" / "demo-1"
    (run / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 1, "time": 1.0, "loss": 2.0}) + "\n")
    (run / "status.json").write_text(json.dumps({"state": "done", "step": 2}))
    (run / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    sweep = folder / "runs" / "sweep-1"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"trials": []}))


def test_a_data_folder_holding_the_runs_root_reads_the_data_only(tmp_path):
    """dataset.path: . with runs/ under it: the trainer's metrics.jsonl and checkpoint .json files were read as
    rows and refused ("expected a list of objects, got an object with keys global_step"). They are lorapilot's
    own folders, never data (and they grow as a run trains): skipped."""
    (tmp_path / "train.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    _runs_under(tmp_path)
    rows, fmt, sources = read_rows(tmp_path)
    assert rows == [{"text": "hello"}] and fmt == "text" and all("runs" not in s for s in sources)


def test_a_folder_of_runs_only_says_so(tmp_path):
    _runs_under(tmp_path)
    with pytest.raises(DataError) as e:
        read_rows(tmp_path)
    assert f"lorapilot's run folders under it are skipped: {tmp_path / 'runs' / 'demo-1'}" in str(e.value)
    assert "point dataset.path at the data files" in (e.value.fix or "")


def test_empty_directory(tmp_path):
    with pytest.raises(DataError, match=rf"^{tmp_path}: the directory has no .jsonl"):
        read_rows(tmp_path)


@pytest.mark.parametrize("path", ["missing.jsonl", "./data/train", "/nowhere/at/all.csv"])
def test_path_not_found(path):
    with pytest.raises(DataError, match=rf"^{path}: no such file or directory"):
        read_rows(path)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'"):
        read_rows(path)


def test_a_hub_dataset_out_of_reach_and_not_cached_is_refused(hub_out_of_reach):
    with pytest.raises(DataError) as e:
        read_rows("tatsu-lab/alpaca")
    assert str(e.value).startswith("tatsu-lab/alpaca: not a local path, the Hugging Face Hub is unreachable "
                                   "(offline?), and the dataset is not in the cache")
    assert "download it where there is network" in str(e.value)


def test_a_hub_dataset_out_of_reach_is_read_from_its_cached_copy_and_says_which(hub_out_of_reach):
    """Without HF_HUB_OFFLINE the cached copy was refused because the hub did not answer: the user had to know the
    variable. Now it is read, and one line says it is the cached copy and which revision."""
    import datasets.config

    cache_hub_dataset(hub_out_of_reach, "someone/tiny_set", [{"instruction": "q", "output": "a"}] * 3)
    notes: list[str] = []
    rows, fmt, sources = read_rows("someone/tiny_set", notes=notes)
    assert (len(rows), fmt, sources[0]) == (3, "alpaca", "someone/tiny_set: row 1")
    [line] = notes
    assert re.fullmatch(r"someone/tiny_set: the Hugging Face Hub is unreachable \(offline\?\): read from the cached "
                        r"copy, revision 0123456789ab \(cached \d{4}-\d\d-\d\d \d\d:\d\d\)", line)
    assert datasets.config.HF_HUB_OFFLINE is False   # datasets is put back as it was


def test_the_newest_cached_copy_is_the_one_read_and_named(hub_out_of_reach):
    old = cache_hub_dataset(hub_out_of_reach, "someone/tiny_set", [{"text": "old"}], revision="a" * 40)
    cache_hub_dataset(hub_out_of_reach, "someone/tiny_set", [{"text": "new"}, {"text": "new"}], revision="b" * 40)
    os.utime(old, (1, 1))
    notes: list[str] = []
    rows, _, _ = read_rows("someone/tiny_set", notes=notes)
    assert [r["text"] for r in rows] == ["new", "new"] and "revision bbbbbbbbbbbb" in notes[0]


def test_the_cached_copys_line_reaches_the_data_report(hub_out_of_reach, demo_tokenizer):
    """The report's notes are what train.log, inspect-data and the wizard's data step print."""
    from engine.config import Config
    from engine.data import prepare_examples

    cache_hub_dataset(hub_out_of_reach, "someone/tiny_set", [{"instruction": "q", "output": "an answer"}] * 4)
    cfg = Config()
    cfg.dataset.path = "someone/tiny_set"
    report = prepare_examples(cfg, demo_tokenizer).report
    assert any(n.startswith("someone/tiny_set: the Hugging Face Hub is unreachable (offline?): read from the "
                            "cached copy, revision 0123456789ab") for n in report.notes)
    assert report.hub_revisions == {"someone/tiny_set": HUB_COMMIT}   # what the trainer records (inspect-data --json)


def test_the_line_names_the_copy_datasets_read_not_the_newest_folder(hub_out_of_reach):
    """The line named the newest folder of the dataset's cache, but datasets' offline load reads the newest of its
    default configuration: a load with other arguments (data_files=..., in a notebook) leaves a newer folder of
    another, and the line named a revision the rows did not come from. It names the folder the load read."""
    read = cache_hub_dataset(hub_out_of_reach, "someone/tiny_set", [{"text": "read"}], revision="a" * 40)
    os.utime(read, (1, 1))
    cache_hub_dataset(hub_out_of_reach, "someone/tiny_set", [{"text": "other"}], revision="b" * 40,
                      config_id="default-1a2b3c4d5e6f7a8b")
    notes: list[str] = []
    rows, _, _ = read_rows("someone/tiny_set", notes=notes)
    assert [r["text"] for r in rows] == ["read"]
    assert "revision aaaaaaaaaaaa" in notes[0], notes
    revisions: dict[str, str] = {}
    read_rows("someone/tiny_set", revisions=revisions)
    assert revisions == {"someone/tiny_set": "a" * 40}


def test_hub_id_offline_mode_not_in_cache(monkeypatch, tmp_path):
    import datasets.config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path)
    with pytest.raises(DataError, match=r"^lorapilot-test/no-such-dataset: not a local path, HF_HUB_OFFLINE is set, "
                                        r"and the dataset is not in the cache"):
        read_rows("lorapilot-test/no-such-dataset")


def test_empty_path():
    with pytest.raises(DataError, match="dataset.path is empty"):
        read_rows("")


def test_jsonl_with_old_mac_line_ends_reads_and_counts_as_its_rows(tmp_path):
    """Lines split at "\\n" only (so that U+2028 inside a string splits nothing) refused a file whose lines end at a
    lone "\\r" as 'Extra data', where it had read before; the estimate counted it as one row. Both read three rows,
    and a U+2028 inside a string still splits nothing, a blank line of Unicode spaces is no row for either."""
    from engine.data.formats import read_file_rows
    from engine.estimate.dataset_size import count_examples

    rows = [{"instruction": f"q{i}", "output": f"a{i}\u2028b"} for i in range(3)]
    for end in ("\r", "\r\n", "\n"):
        path = tmp_path / f"d{len(end)}{end == chr(13)}.jsonl"
        text = end.join(json.dumps(r, ensure_ascii=False) for r in rows) + end + "\u00a0\u2003" + end
        path.write_bytes(text.encode())
        read, _ = read_file_rows(path)
        assert read == rows, (repr(end), read)
        assert count_examples(str(path)) == 3, repr(end)


# ---------------------------------------------------------------- cells and numbers as written

def test_a_json_number_in_a_text_field_is_the_text_written(tmp_path):
    """Python's float of a JSON number is not what the file says: an answer 1e5 trained as "100000.0", 0.10 as "0.1",
    2.50 as "2.5", and a long fraction lost its last digits. The text is the number as written; an integer's
    digits are (they are exact); true is refused by name."""
    rows = ['{"prompt": "Big?", "completion": 1e5}', '{"prompt": "Price?", "completion": 2.50}',
            '{"prompt": "Ten?", "completion": 0.10}', '{"prompt": "Pi?", "completion": 3.14159265358979323846}',
            '{"prompt": 7, "completion": -0.0}', '{"prompt": "Small?", "completion": 1E-7}']
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    read, _, _ = read_rows(path)
    assert [r["completion"] for r in read] == ["1e5", "2.50", "0.10", "3.14159265358979323846", "-0.0", "1E-7"]
    assert read[4]["prompt"] == "7"
    array = tmp_path / "d.json"
    array.write_text('[{"instruction": "Big?", "output": 1.0e5}]', encoding="utf-8")
    assert read_rows(array)[0] == [{"instruction": "Big?", "input": "", "output": "1.0e5"}]
    chat = tmp_path / "c.jsonl"
    chat.write_text('{"messages": [{"role": "user", "content": "Half?"}, {"role": "assistant", "content": 0.50, '
                    '"weight": 1.0}]}\n', encoding="utf-8")
    assert read_rows(chat)[0][0]["messages"][1]["content"] == "0.50"
    path.write_text('{"prompt": "Yes?", "completion": true}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: field 'completion' must be text, got true"):
        read_rows(path)
    # a messages column of JSON text in a CSV file: the same reading
    csv = tmp_path / "m.csv"
    csv.write_text('messages\n"[{""role"": ""user"", ""content"": ""Half?""}, '
                   '{""role"": ""assistant"", ""content"": 0.50}]"\n', encoding="utf-8")
    notes: list[str] = []
    assert read_rows(csv, notes=notes)[0][0]["messages"][1]["content"] == "0.50"
    assert notes == []


def test_a_csv_column_pandas_renames_is_read_as_written(tmp_path):
    """A header with a repeated or an empty name: pandas names those columns "prompt.1", "Unnamed: 2", so string
    columns named from the header as written matched none of them, and every column stayed typed (a zip code
    01234 trained as "1234.0")."""
    path = tmp_path / "d.csv"
    path.write_text("prompt,prompt,,completion\nZip?,a,x,01234\nBig?,b,y,1e5\nPi?,c,z,3.10\n", encoding="utf-8")
    rows, fmt, sources = read_rows(path)
    assert fmt == "completion" and sources == [f"{path}:2", f"{path}:3", f"{path}:4"]
    assert [r["completion"] for r in rows] == ["01234", "1e5", "3.10"]


def test_a_hub_dataset_of_csv_files_is_read_as_written(tmp_path, monkeypatch):
    """datasets' csv builder typed a hub dataset's CSV columns as pandas does: a zip code 00501 trained as "501.0", 3.10
    as "3.1", an answer NA as an empty one. The hub's loader, on a folder of CSV files (load_dataset infers the csv
    builder for it as for a hub repository's files), reads every cell as written."""
    import datasets.config

    from engine.data.formats import _load_hub

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    folder = tmp_path / "zips"
    folder.mkdir()
    (folder / "train.csv").write_text("prompt,completion\nHoltsville?,00501\nBoston?,02101\nPi?,3.10\nAny?,NA\n",
                                      encoding="utf-8")
    notes: list[str] = []
    ds = _load_hub(str(folder), offline=False, fix="", notes=notes)
    assert [r["completion"] for r in ds.to_list()] == ["00501", "02101", "3.10", "NA"]
    assert notes == []
    parquet = tmp_path / "typed"
    parquet.mkdir()
    import pandas as pd

    pd.DataFrame({"prompt": ["Pi?"], "completion": [3.1]}).to_parquet(parquet / "train.parquet")
    assert _load_hub(str(parquet), offline=False, fix="", notes=notes).to_list() == [{"prompt": "Pi?",
                                                                                     "completion": 3.1}]


def test_a_hub_csv_dataset_cached_only_typed_is_read_and_says_so(hub_out_of_reach):
    """Offline, a cache holding only the copy datasets typed (loaded before lorapilot read CSV cells as written): it is
    read, and a line says what that copy did to the cells and how to get them as written."""
    folder = cache_hub_dataset(hub_out_of_reach, "someone/zips", [{"prompt": "Holtsville?", "completion": 501.0}])
    info = json.loads((folder / "dataset_info.json").read_text(encoding="utf-8"))
    (folder / "dataset_info.json").write_text(json.dumps({**info, "builder_name": "csv"}), encoding="utf-8")
    notes: list[str] = []
    rows, _, _ = read_rows("someone/zips", notes=notes)
    assert rows == [{"prompt": "Holtsville?", "completion": "501.0"}]
    typed = [n for n in notes if n.startswith("someone/zips: its CSV")]
    assert typed == ["someone/zips: its CSV files were read with the columns pandas typed (a column of numbers loses "
                     "its leading zeros and trailing decimal zeros: 00501 reads 501.0; NA, null and None read as "
                     "empty), the only copy that could be read offline; load it once with network to read every "
                     "cell as written"]


def test_a_parquet_float_in_a_text_field_is_said(tmp_path):
    """Parquet keeps the number, not the text it was made from (a column of ints with a gap is floats: 3 is 3.0): the
    text trained is Python's, said once; a string column and JSON numbers say nothing."""
    import pandas as pd

    pd.DataFrame({"prompt": ["Three?", "None?"], "completion": [3.0, 1e-05]}).to_parquet(tmp_path / "d.parquet")
    notes: list[str] = []
    rows, _, _ = read_rows(tmp_path / "d.parquet", notes=notes)
    assert [r["completion"] for r in rows] == ["3.0", "1e-05"]
    assert notes == ["some text fields are stored as floating-point numbers (a Parquet file's or a hub dataset's "
                     "typed column): trained as Python writes them (3.0, 1e-05, 100000.0), which may not be the text "
                     "they were made from; store the column as strings to train on the text as written"]
    pd.DataFrame({"prompt": ["Three?"], "completion": ["3"]}).to_parquet(tmp_path / "s.parquet")
    (tmp_path / "n.jsonl").write_text('{"prompt": "Three?", "completion": 3.0}\n', encoding="utf-8")
    for name in ("s.parquet", "n.jsonl"):
        notes = []
        read_rows(tmp_path / name, notes=notes)
        assert notes == [], name


def test_a_csv_of_questions_and_answers_is_refused_with_the_prepare_command_that_makes_its_training_file(tmp_path,
                                                                                                          monkeypatch):
    """A CSV's question,answer columns (no format's fields) were refused with 'rename the fields, or set
    dataset.format': no dataset.format reads them. The refusal names the `lorapilot prepare` command, which works."""
    import shlex

    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    Path("qa.csv").write_text("question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_rows("qa.csv")
    assert "dataset.format" not in e.value.fix
    command = re.search(r"`lorapilot (prepare [^`]+)`", e.value.fix).group(1)
    assert command == "prepare qa.csv --instruction-column question --output-column answer --out qa.jsonl"
    assert "then set dataset.path to qa.jsonl;" in e.value.fix
    assert main(shlex.split(command)) == 0
    rows, fmt, _ = read_rows("qa.jsonl")
    assert fmt == "alpaca" and len(rows) == 2


def test_a_csv_whose_columns_are_not_guessed_gets_the_prepare_command_with_its_columns_to_fill_in(tmp_path,
                                                                                              monkeypatch):
    """A CSV of question,answer_text: no column is known as the answer, and the fix said only "rename the fields to
    one of these formats'" (a stray quote). It names the prepare command with the two columns to fill in, which,
    filled in, makes a training file that reads."""
    import shlex

    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    Path("qa.csv").write_text("question,answer_text\nWhat is 2+2?,4\nCapital of France?,Paris\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_rows("qa.csv")
    assert "'" not in e.value.fix.replace("`", "")
    command = re.search(r"`lorapilot (prepare [^`]+)`", e.value.fix).group(1)
    assert command == ("prepare qa.csv --instruction-column QUESTION_COLUMN --output-column ANSWER_COLUMN "
                       "--out qa.jsonl")
    assert "(with your columns), then set dataset.path to qa.jsonl;" in e.value.fix
    filled = command.replace("QUESTION_COLUMN", "question").replace("ANSWER_COLUMN", "answer_text")
    assert main(shlex.split(filled)) == 0
    assert read_rows("qa.jsonl")[1] == "alpaca"


@pytest.mark.parametrize("cwd, dataset_path, out", [
    (".", "data", "qa.jsonl"),
    ("data", ".", "{tmp}/qa.jsonl"),
])
def test_a_csv_in_a_dataset_folder_gets_its_training_file_outside_the_folder(tmp_path, monkeypatch, cwd,
                                                                             dataset_path, out):
    """dataset.path a folder holding a CSV of questions and answers: the `lorapilot prepare` command wrote its .jsonl
    beside the CSV, in the folder, where the CSV was still read and refused again. The training file goes beside
    the folder, and the fix says to set dataset.path to it, which then reads."""
    import shlex

    from engine.cli import main

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "qa.csv").write_text("question,answer\nWhat is 2+2?,4\nCapital of France?,Paris\n",
                                              encoding="utf-8")
    monkeypatch.chdir(tmp_path / cwd)
    with pytest.raises(DataError) as e:
        read_rows(dataset_path)
    command = re.search(r"`lorapilot (prepare [^`]+)`", e.value.fix).group(1)
    out = out.format(tmp=tmp_path)
    assert shlex.split(command)[-2:] == ["--out", out]
    assert f"then set dataset.path to {out};" in e.value.fix
    assert main(shlex.split(command)) == 0
    assert not (tmp_path / "data" / "qa.jsonl").exists()
    with pytest.raises(DataError):
        read_rows(dataset_path)   # the folder still holds the CSV only
    rows, fmt, _ = read_rows(out)
    assert fmt == "alpaca" and len(rows) == 2


@pytest.mark.parametrize("fields, fix", [
    (("question", "answer"), "rename the fields: question -> instruction, answer -> output (the alpaca format)"),
    (("prompt", "response"), "rename the fields: response -> completion (the completion format)"),
    (("foo", "bar"), "rename the fields to those of one of these formats"),
])
def test_rows_no_format_reads_are_refused_with_the_renames_that_make_them_one(tmp_path, fields, fix):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(dict(zip(fields, ("hi", "hello")))) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_rows(path)
    assert e.value.fix == fix
    if "->" in fix:   # the renames done, the file reads
        renamed = dict(pair.split(" -> ") for pair in fix.split(": ", 1)[1].split(" (")[0].split(", "))
        path.write_text(json.dumps({renamed.get(k, k): v for k, v in zip(fields, ("hi", "hello"))}) + "\n")
        assert read_rows(path)[1] in ("alpaca", "completion")
