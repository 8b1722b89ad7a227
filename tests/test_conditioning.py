"""The mini world's class-prompt conditioning (lare2lib.models.conditioning)."""

from __future__ import annotations

import pytest
import torch

from lare2lib.models.conditioning import ClassPromptEncoder, class_prompt

CLASSES = ("animal", "object", "person")


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return ClassPromptEncoder(class_names=CLASSES, dim=8, seq_len=3)


def test_class_prompt_writes_the_release_article_unless_asked_for_grammar():
    assert class_prompt("animal") == "a photo of a animal"  # as the release writes it
    assert class_prompt("animal", "grammatical") == "a photo of an animal"
    assert class_prompt("person", "grammatical") == "a photo of a person"


def test_every_prompt_policy_maps_to_its_index(encoder):
    assert encoder.prompt_to_index("") == 0
    assert encoder.prompt_to_index("  A photo ") == 0
    assert [encoder.prompt_to_index(class_prompt(name)) for name in CLASSES] == [1, 2, 3]
    assert encoder.prompt_to_index("a photo of a animal") == 1  # either article is accepted


def test_an_unknown_class_is_a_clear_error(encoder):
    with pytest.raises(ValueError, match="names no class of this model.*animal"):
        encoder.prompt_to_index("a photo of a tabby cat")


def test_embeddings_have_the_unet_shape_and_differ_by_class(encoder):
    states = encoder.encode_prompts(["", class_prompt("animal"), class_prompt("person"), ""])
    assert states.shape == (4, 3, 8)
    torch.testing.assert_close(states[0], states[3])  # same prompt, same states
    assert not torch.allclose(states[1], states[2])
    torch.testing.assert_close(encoder(torch.tensor([1])), states[1:2])


def test_config_round_trip_keeps_the_class_names(encoder, tmp_path):
    encoder.save_pretrained(tmp_path)
    reloaded = ClassPromptEncoder.from_pretrained(tmp_path)
    assert reloaded.class_names == CLASSES
    torch.testing.assert_close(reloaded.encode_prompts(["a photo of a person"]),
                               encoder.encode_prompts(["a photo of a person"]))
