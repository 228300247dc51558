"""CLIP tokenization from open-clip-torch's bundled vocabulary: known ids, padding per encoder,
the `!` cases, truncation at 77, and refusals of a missing or broken vocabulary."""

import gzip

import pytest
import torch

from itermix_kdiff.sd.tokenizer import END_TOKEN, PAD_IDS, START_TOKEN, tokenize


def _body(ids):
    return ids[: int((ids == END_TOKEN).int().argmax()) + 1].tolist()


def test_known_ids():
    assert _body(tokenize("a photo of a cat")[0]) == [49406, 320, 1125, 539, 320, 2368, 49407]
    # a bare "!" inside a prompt is id 0, the OpenCLIP padding id
    assert _body(tokenize("wow !$ ok")[0]) == [49406, 2781, 0, 259, 2481, 49407]
    assert _body(tokenize("! !! !!!")[0]) == [49406, 256, 748, 995, 49407]
    # lower-cased, whitespace collapsed
    assert torch.equal(tokenize("A  Photo of a CAT"), tokenize("a photo of a cat"))


def test_padding_by_position_after_the_first_end_token():
    clip, open_clip = tokenize("wow !$ ok", PAD_IDS["clip"]), tokenize("wow !$ ok", PAD_IDS["open_clip"])
    assert clip.shape == open_clip.shape == (1, 77) and clip.dtype == torch.long
    assert clip[0, 6:].eq(END_TOKEN).all() and open_clip[0, 6:].eq(0).all()
    # the "!" (id 0) before the end token is a token, not padding
    assert clip[0, 2] == 0 and open_clip[0, 2] == 0
    empty = tokenize("", PAD_IDS["clip"])[0]
    assert empty[:2].tolist() == [START_TOKEN, END_TOKEN] and empty[2:].eq(END_TOKEN).all()


def test_truncation_at_77_and_batches():
    long = tokenize(["cat " * 100, "a dog"], PAD_IDS["open_clip"])
    assert long.shape == (2, 77)
    assert long[0, 0] == START_TOKEN and long[0, 1:76].eq(2368).all() and long[0, 76] == END_TOKEN
    assert _body(long[1]) == [49406, 320, 1929, 49407]
    exactly = tokenize("cat " * 75)[0]           # 75 tokens fit: no truncation
    assert exactly[76] == END_TOKEN and exactly[75] == 2368


def test_agrees_with_transformers_clip_tokenizer():
    """The reference the diffusers pipelines use (built from the same BPE file) gives the same ids
    for ordinary prompts, padded with the end token."""
    from tests.tiny_sd import clip_tokenizer

    prompts = ["a castle on a hill, highly detailed", "portrait of an old man, 35mm, f/1.8",
               "blurry, lowres, jpeg artifacts", ""]
    theirs = clip_tokenizer()(prompts, padding="max_length", max_length=77, truncation=True,
                              return_tensors="pt").input_ids
    assert torch.equal(tokenize(prompts), theirs)


def test_rejects_bad_prompts():
    with pytest.raises(TypeError, match="prompts must be a string"):
        tokenize(["ok", 3])
    with pytest.raises(TypeError, match="prompts must be a string"):
        tokenize([])


def test_missing_or_broken_vocabulary_is_never_a_silent_empty_tokenizer(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tokenize("a cat", bpe_path=str(tmp_path / "missing.txt.gz"))
    short = tmp_path / "short.txt.gz"
    with gzip.open(short, "wt") as f:
        f.write("#version: 0.2\nt h\nth e</w>\n")
    with pytest.raises(ValueError, match="expected 49408 tokens"):
        tokenize("a cat", bpe_path=str(short))
