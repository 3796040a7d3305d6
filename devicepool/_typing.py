"""Type aliases of the public signatures (for type checkers and readers; ``py.typed``).

Light and honest: what the functions accept, not every shape they check at run time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["PathLike", "UtteranceSet", "FeatureSet", "ArrayLike", "NDArray", "RandomState"]

#: a file path
PathLike = str | os.PathLike[str]
#: utterances: 1-D waveforms and/or audio file paths, or a 2-D array (n_utterances, n_samples)
UtteranceSet = Sequence[ArrayLike | PathLike] | NDArray[np.generic]
#: features of utterances: one (n_frames, n_features) array each, or a 2-D / 3-D array
FeatureSet = Sequence[ArrayLike] | NDArray[np.generic]
#: a seed: None, an int or a numpy RandomState
RandomState = int | np.random.RandomState | None
