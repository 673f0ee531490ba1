"""One user's model inputs as a numpy row, for the packed serving forms of the models.

``encoding.user_inputs`` builds the user-side inputs of the user tower and the ranker
as torch tensors, one module call per embedding. Serving encodes one user per request,
where each of those calls costs more than its arithmetic; :class:`UserInputTables`
holds the same tables as numpy arrays (views of the modules' weights, no copies) and
:meth:`UserInputTables.row` gives the same inputs, in the same order, as one row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from feedrank.models.encoding import IdEmbedding, UserTensors

F32 = npt.NDArray[np.float32]


def weights_of(parameter: torch.Tensor) -> F32:
    """A parameter's values as a numpy array sharing its memory."""
    values: F32 = parameter.detach().numpy()
    return values


@dataclass(frozen=True)
class UserInputTables:
    """The embedding tables ``encoding.user_inputs`` reads, as numpy arrays."""

    user_id: F32
    language: F32
    country: F32
    age_bucket: F32

    @classmethod
    def of(
        cls,
        *,
        user_id: IdEmbedding,
        language: nn.Embedding,
        country: nn.Embedding,
        age_bucket: nn.Embedding,
    ) -> UserInputTables:
        return cls(
            weights_of(user_id.table.weight),
            weights_of(language.weight),
            weights_of(country.weight),
            weights_of(age_bucket.weight),
        )

    def row(self, users: UserTensors) -> F32:
        """``torch.cat(user_inputs(users, ...), dim=1)[0]`` of a one-user batch."""
        known = float(users.known[0])
        row: F32 = np.concatenate(
            [
                self.user_id[int(users.id_bucket[0])] * np.float32(known),
                np.array([known], dtype=np.float32),
                self.language[int(users.language[0])],
                self.country[int(users.country[0])],
                self.age_bucket[int(users.age_bucket[0])],
                users.numeric.numpy()[0],
                users.topic_affinity.numpy()[0],
            ]
        ).astype(np.float32, copy=False)
        return row
