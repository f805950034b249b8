import pytest
import torch

from streamdit.text import TextEmbedding, cat, load_text_encoder, pad_to, resolve_encoder_path


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder("minilm", 32)


def test_minilm_loads_offline_from_the_wheel():
    path = resolve_encoder_path("minilm")
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_embeddings_shapes_mask_and_pooled_norm(encoder):
    emb = encoder(["a red circle moving left", "a large blue square bouncing around on a grey background"])
    assert emb.tokens.shape[0] == 2 and emb.tokens.shape[2] == encoder.dim == 384
    lengths = emb.mask.sum(1)
    assert lengths[0] < lengths[1]  # the shorter caption is padded
    assert torch.all(emb.tokens[0, lengths[0] :] == 0)
    assert torch.allclose(emb.pooled.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_embeddings_carry_meaning(encoder):
    a, b, c = encoder(
        ["a red circle moving left", "a red circle drifting to the left", "a green cross sinking"]
    ).pooled
    assert torch.dot(a, b) > torch.dot(a, c) + 0.1


def test_cache_round_trip_gives_identical_embeddings(encoder, tmp_path):
    captions = ["a yellow diamond orbiting the centre", "a cyan cross rising"]
    first = encoder(captions)
    cache = tmp_path / "text.pt"
    encoder.warm(captions + ["a new caption"], cache_file=cache)
    fresh = type(encoder)("minilm", 32)
    fresh.warm([], cache_file=cache)
    assert set(captions) <= set(fresh._cache)
    again = fresh(captions)
    assert torch.equal(first.tokens, again.tokens) and torch.equal(first.pooled, again.pooled)


@pytest.mark.parametrize("bad", [[""], ["   "], [None]])
def test_empty_captions_are_rejected(encoder, bad):
    with pytest.raises(ValueError, match="non-empty strings"):
        encoder(bad)


def test_unknown_encoder_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="nothing is downloaded"):
        resolve_encoder_path(str(tmp_path / "no-model"))


def test_padding_cat_and_where():
    a = TextEmbedding(torch.ones(2, 3, 4), torch.ones(2, 3, dtype=torch.bool), torch.ones(2, 4))
    b = TextEmbedding(torch.zeros(2, 1, 4), torch.ones(2, 1, dtype=torch.bool), torch.zeros(2, 4))
    padded = pad_to(b, 3)
    assert padded.tokens.shape == (2, 3, 4) and padded.mask.tolist() == [[True, False, False]] * 2
    both = cat([a, b])
    assert both.tokens.shape == (4, 3, 4) and both.mask.sum().item() == 6 + 2
    mixed = a.where(torch.tensor([True, False]), b)
    assert mixed.pooled[:, 0].tolist() == [1.0, 0.0] and mixed.mask[1].tolist() == [True, False, False]


def test_huge_captions_are_rejected_and_non_ascii_ones_work(encoder):
    with pytest.raises(ValueError, match="1001 characters; at most 1000"):
        encoder(["x" * 1001])
    emb = encoder(["un cercle rouge qui glisse à gauche ✨", "红色圆圈"])
    assert torch.isfinite(emb.tokens).all() and emb.mask.sum(1).min() >= 3
    # the characters are read, not all mapped to one unknown token
    assert not torch.allclose(emb.pooled[0], emb.pooled[1], atol=1e-3)
