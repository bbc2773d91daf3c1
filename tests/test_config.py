from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlpforge.config import PRESETS, ModelConfig
from nlpforge.errors import ConfigError


def test_presets_build_and_derive() -> None:
    for name in PRESETS:
        config = ModelConfig.from_name(name)
        assert config.head_dim * config.num_heads == config.hidden_size
    tiny = ModelConfig.from_name("tiny-bert")
    assert (tiny.hidden_size, tiny.num_layers, tiny.vocab_size, tiny.family) == (32, 2, 99, "bert")
    assert ModelConfig.from_name("tiny-gpt").family == "gpt"


def test_roberta_position_offset_is_derived() -> None:
    config = ModelConfig.from_name("tiny-bert", model_type="xlm-roberta", pad_token_id=1)
    assert config.position_offset == 2


def test_to_dict_round_trip_and_json(tmp_path: Path) -> None:
    config = ModelConfig.from_name("tiny-bert", num_layers=3)
    config.save(tmp_path / "c.json")
    assert ModelConfig.from_file(tmp_path / "c.json") == config
    assert "family" not in json.loads((tmp_path / "c.json").read_text())


def test_yaml_preset_with_overrides(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("preset: tiny-bert\nnum_layers: 4\n")
    assert ModelConfig.from_file(tmp_path / "c.yaml").num_layers == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(num_heads=5), "not divisible"),
        (dict(hidden_size=0), "'hidden_size' must be a positive integer"),
        (dict(model_type="t5"), "'t5' is not supported"),
        (dict(hidden_act="swish"), "hidden_act 'swish'"),
        (dict(dropout=1.5), "'dropout' must be in"),
    ],
)
def test_validation(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_name("tiny-bert", **overrides)


def test_unknown_field_and_preset(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({**PRESETS["tiny-bert"], "hiden_size": 3}))
    with pytest.raises(ConfigError, match="unknown config field"):
        ModelConfig.from_file(tmp_path / "c.json")
    with pytest.raises(ConfigError, match="unknown preset 'bert-huge'"):
        ModelConfig.from_name("bert-huge")


def test_from_checkpoint(tiny_bert_dir: Path) -> None:
    config = ModelConfig.from_checkpoint(tiny_bert_dir)
    assert (config.model_type, config.hidden_size, config.num_layers) == ("bert", 32, 2)
