"""The option lists the prompt and resolution nodes show, and the size check, from the profiles (pure)."""

from __future__ import annotations

import pytest

from animekit.prompting.profile import YEAR_CHOICES, aesthetic_choices, load_profile, profile_ids, size_labels
from animekit.sizes.sets import size_label


def test_size_labels_cover_every_profile_portrait_first():
    labels = size_labels()
    assert len(labels) == len(set(labels))
    assert {size_label(s) for pid in profile_ids() for s in load_profile(pid).sizes} == set(labels)
    ratios = [w / h for w, h in (map(int, label.split(" ")[0].split("x")) for label in labels)]
    assert ratios == sorted(ratios) and ratios[0] < 1 < ratios[-1]
    assert "832x1216 (13:19 portrait)" in labels and "512x768 (2:3 portrait)" in labels


def test_a_profile_gives_its_own_sizes_and_refuses_the_others():
    xl, sd15 = load_profile("animagine-xl-3.0"), load_profile("sd15-anime")
    assert xl.size("832x1216 (13:19 portrait)") == (832, 1216)
    assert xl.size("1024x1024") == (1024, 1024)
    with pytest.raises(ValueError) as info:
        sd15.size("832x1216 (13:19 portrait)")
    assert str(info.value) == ("size '832x1216 (13:19 portrait)' is not one of sd15-anime's sizes: "
                               "512x512 (1:1 square), 512x768 (2:3 portrait), 768x512 (3:2 landscape)")  # fmt: skip


def test_aesthetic_choices_list_each_profiles_tags_once():
    choices = aesthetic_choices()
    assert choices[0] == "none" and len(choices) == len(set(choices))
    for pid in profile_ids():
        assert set(load_profile(pid).aesthetic_tags) <= set(choices)
    assert "very aesthetic" in choices


def test_every_offered_year_is_one_some_profile_takes():
    """One list serves every profile; a profile that does not know a year says which it knows."""
    assert YEAR_CHOICES[:6] == ("none", "newest", "recent", "mid", "early", "oldest")
    for year in YEAR_CHOICES[6:]:
        taken = []
        for pid in profile_ids():
            try:
                taken.append(bool(load_profile(pid).year_tag(year)))
            except ValueError as exc:
                assert "year" in str(exc), exc
        assert any(taken), year
    with pytest.raises(ValueError, match="profile noobai-xl knows years 2005-2024; got 2025"):
        load_profile("noobai-xl").year_tag("2025")
