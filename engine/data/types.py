"""The data layer's products, shared with diagnostics, the wizard and the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field

IGNORE_INDEX = -100  # the label value the loss skips (Hugging Face convention)


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]              # not shifted: the model shifts them
    source: str                    # where it came from, e.g. "train.jsonl:12"
    full_length: int               # tokens before truncation
    trained_tokens: int            # labels != -100 after truncation
    trained_tokens_full: int       # labels != -100 before truncation
    truncated: bool = False        # some tokens were cut by max_seq_length
    prompt_shortened: bool = False  # prompt tokens dropped so the response fits
    # input_ids[:prompt_len] is the prompt before the first answer: tokenized alone, as inference tokenizes
    # it (what samples feed for a held-out row); 0 for text rows, which have none
    prompt_len: int = 0
    prompt_text: str = ""          # the text of that prompt
    response_text: str = ""        # the first answer as written in the data (what follows the prompt)
    question: str = ""             # the user's turn before it as written, without the template's markup
    # (text, trained) runs decoded from the tokens, for previews; filled by inspect_dataset only (the
    # trainer does not need a second copy of every row's text).
    segments: list[tuple[str, bool]] = field(default_factory=list, repr=False, compare=False)
    row: int = field(default=-1, repr=False, compare=False)   # its row in the file (inspect_dataset sets it)
    # its system prompt is nowhere in the row: the chat template leaves it out of a conversation that ends with an
    # answer (and writes it into a prompt that ends with the user turn)
    system_left_out: bool = False

    @property
    def response_tokens_lost(self) -> int:
        return self.trained_tokens_full - self.trained_tokens

    def __len__(self) -> int:
        return len(self.input_ids)


class TooLong(str):
    """The drop reason "too long" (a str like every reason: counted and compared as one), carrying the row's token
    length: a row neither shortened nor cut to fit max_seq_length still counts for the length that would fit it."""
    full_length: int

    def __new__(cls, full_length: int) -> TooLong:
        reason = super().__new__(cls, "too long")
        reason.full_length = full_length
        return reason


@dataclass
class DataReport:
    """What loading found: counts the wizard, inspect-data and the pre-flight show."""
    path: str
    format: str
    n_rows: int = 0
    n_train: int = 0
    n_validation: int = 0
    dropped: dict[str, int] = field(default_factory=dict)    # reason -> count
    n_truncated: int = 0                                      # lost some trained tokens
    n_prompt_shortened: int = 0
    n_empty_turns: int = 0                                    # assistant turns with no text, masked (not trained)
    n_empty_questions: int = 0                                # user turns with no text before a trained answer
    n_system_left_out: int = 0                                # trained without their system prompt (the template's)
    trained_tokens: int = 0
    total_tokens: int = 0
    template: str = ""                                        # "chat template" or "default (alpaca)"
    system_prompt: str = ""                                   # the one every row shares, "" if they differ
    validation_lengths: list[int] = field(default_factory=list)  # token lengths of the validation examples
    # Token lengths of the training rows dropped as too long: with the kept examples' full lengths, every
    # training row's length before max_seq_length (what the max_seq_length advice reads).
    too_long_lengths: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # {hub id: the revision its load read (engine.hub.read_from)}: what the trainer records in each checkpoint
    hub_revisions: dict[str, str] = field(default_factory=dict)

    def cuts(self) -> str:
        """What max_seq_length cut, in the words train.log and inspect-data share."""
        rows = "row" if self.n_truncated == 1 else "rows"   # a count of rows, never read as a count of tokens
        return f"{self.n_truncated:,} {rows} lost response tokens, {self.n_prompt_shortened:,} had their prompt shortened"

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)
