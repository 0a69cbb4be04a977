"""run/composer_fixes.py: the warnings Composer raises about what we do on purpose are silenced, and only those."""

from __future__ import annotations

import warnings

from composer_bert.run.composer_fixes import BENIGN_WARNINGS, apply_composer_fixes


def test_benign_composer_warnings_are_silenced_and_others_are_not():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_composer_fixes()
        for message in BENIGN_WARNINGS:
            warnings.warn(f"{message}, and the rest of Composer's text", UserWarning, stacklevel=1)
        warnings.warn("DataloaderNumBatchesWarning: something we should fix instead", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["DataloaderNumBatchesWarning: something we should fix instead"]
