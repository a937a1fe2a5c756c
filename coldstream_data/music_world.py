"""A seeded music world with known ground truth: the one dataset where we can check recovery.

Everything is drawn from a small generative model, vectorised in numpy, so the same
``WorldConfig`` always yields the same world (any scale, seconds for "demo", well under a
minute for "large"). Audio is not stored: :func:`render_audio` synthesises a clip on demand
from the song's row (tempo, key/mode, genre timbre, rhythm density, loudness contour) and a
per-song seed, so disk stays small and any song can be heard.

Generative story (all of it exposed in ``Dataset.truth``):
  genres -> sub-genres -> artists -> songs (genre, sub-genre, mood, audio params, popularity,
  release time); users have a few favourite genres (Dirichlet), a favourite sub-genre in each,
  a mood preference and a popularity affinity; each interaction picks a user by activity, a
  genre and mood from their taste, then a song (popularity-weighted or uniform: the long
  tail), a time after release; the action (skip/play/complete/collect) follows how well the
  song matches the user.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .base import ACTION_CODE, Dataset, Interactions, make_catalogue

DAY_MS = 86_400_000
#: 2024-01-01T00:00:00Z: fixed so worlds are reproducible and never "in the future".
EPOCH_START_MS = 1_704_067_200_000


@dataclass(frozen=True)
class GenreStyle:
    """Genre-level knobs shared by audio, text and listener behaviour."""

    tempo: float  # bpm
    major: float  # probability of major mode
    register: int  # MIDI note of the melody's tonic
    harmonics: tuple[float, ...]  # timbre: relative amplitude of partials 1..n
    attack: float  # seconds: plucked (short) .. pads (long)
    density: float  # melody onsets per beat
    drums: float  # percussion level 0..1
    contour: str  # loudness shape over the clip
    subgenres: tuple[str, ...]
    words: tuple[str, ...]  # vocabulary for titles and descriptions
    instruments: tuple[str, ...]


GENRES: dict[str, GenreStyle] = {
    "rock": GenreStyle(124, .7, 57, (1, .8, .6, .5, .4, .3), .01, 2, .8, "flat",
                       ("indie rock", "garage rock", "classic rock"),
                       ("highway", "thunder", "rebel", "fire", "road", "wild"),
                       ("distorted guitar", "bass guitar", "live drums")),
    "electronic": GenreStyle(128, .5, 60, (1, 0, .33, 0, .2, 0, .14), .005, 4, .9, "rise",
                             ("house", "techno", "trance"),
                             ("neon", "pulse", "circuit", "laser", "signal", "midnight"),
                             ("synth bass", "drum machine", "arpeggiator")),
    "hip-hop": GenreStyle(90, .3, 48, (1, .5, .2), .01, 2, 1.0, "flat",
                          ("boom bap", "trap", "lo-fi hip hop"),
                          ("street", "hustle", "crown", "block", "cipher", "flow"),
                          ("808 bass", "sampled loop", "turntables")),
    "jazz": GenreStyle(140, .6, 55, (1, .3, .15, .1), .02, 3, .4, "swell",
                       ("bebop", "cool jazz", "swing"),
                       ("blue", "smoke", "velvet", "lounge", "moon", "avenue"),
                       ("upright bass", "saxophone", "brushed drums")),
    "classical": GenreStyle(80, .65, 62, (1, .2, .05), .15, 1, 0., "swell",
                            ("baroque", "romantic era", "minimalism"),
                            ("sonata", "prelude", "nocturne", "symphony", "aria", "fugue"),
                            ("string quartet", "piano", "orchestra")),
    "folk": GenreStyle(100, .75, 57, (1, .6, .3, .2, .1), .01, 2, .2, "flat",
                       ("americana", "celtic folk", "singer-songwriter"),
                       ("river", "meadow", "home", "harvest", "valley", "lantern"),
                       ("acoustic guitar", "fiddle", "banjo")),
    "metal": GenreStyle(170, .15, 40, (1, .9, .8, .8, .7, .7, .6, .6), .005, 4, 1.0, "flat",
                        ("thrash", "doom", "black metal"),
                        ("iron", "abyss", "storm", "skull", "blade", "inferno"),
                        ("downtuned guitar", "double kick", "growled vocals")),
    "pop": GenreStyle(116, .85, 64, (1, .4, .2, .1), .01, 2, .7, "rise",
                      ("synth-pop", "dance-pop", "teen pop"),
                      ("heart", "summer", "baby", "dance", "sugar", "golden"),
                      ("catchy hook", "synth pads", "clap beat")),
    "reggae": GenreStyle(76, .7, 55, (1, .4, .1), .01, 1, .6, "flat",
                         ("roots reggae", "dub", "dancehall"),
                         ("island", "zion", "sunshine", "rasta", "one love", "irie"),
                         ("offbeat guitar", "dub bass", "organ skank")),
    "ambient": GenreStyle(70, .55, 60, (1, .1), .6, .5, 0., "swell",
                          ("drone", "dark ambient", "new age"),
                          ("drift", "horizon", "echo", "glacier", "mist", "orbit"),
                          ("evolving pads", "field recordings", "reverb washes")),
    "blues": GenreStyle(96, .4, 52, (1, .5, .35, .2), .01, 2, .5, "flat",
                        ("delta blues", "chicago blues", "blues rock"),
                        ("crossroads", "whiskey", "train", "lonesome", "muddy", "rain"),
                        ("slide guitar", "harmonica", "shuffle drums")),
    "latin": GenreStyle(104, .6, 59, (1, .45, .25, .1), .01, 3, .8, "flat",
                        ("salsa", "bossa nova", "reggaeton"),
                        ("corazon", "fiesta", "noche", "sol", "bailar", "amor"),
                        ("congas", "nylon guitar", "brass section")),
}

MOODS: dict[str, tuple[float, float, float]] = {
    # mood: (tempo multiplier, shift of P(major), loudness dB offset)
    "happy": (1.08, .25, 1.0),
    "melancholic": (.88, -.35, -3.0),
    "calm": (.85, .05, -6.0),
    "energetic": (1.15, .1, 3.0),
    "dark": (.95, -.45, 0.0),
    "romantic": (.9, .15, -2.0),
}

GENERIC_WORDS = ("love", "night", "dream", "light", "time", "heart", "city", "sky", "gold",
                 "shadow", "song", "story", "wave", "stars", "fire", "ocean", "silver", "window")
FIRST = ("Alex", "Sam", "Jo", "Maya", "Leo", "Nina", "Kai", "Rosa", "Theo", "Iris", "Omar",
         "Lena", "Ravi", "Zoe", "Ezra", "Mila", "Yusuf", "Ada", "Finn", "Noor")
LAST = ("Reyes", "Stone", "Okafor", "Lind", "Moreau", "Tanaka", "Silva", "Novak", "Quinn",
        "Haddad", "Berg", "Costa", "Ivanova", "Walsh", "Park", "Osei", "Weber", "Kahn")
KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


@dataclass(frozen=True)
class WorldConfig:
    """Every knob of a world; the world is a pure function of this object."""

    n_songs: int = 3000
    n_users: int = 1000
    n_interactions: int = 60_000
    n_genres: int = 12
    days: int = 180
    seed: int = 0
    tag_noise: float = 0.15  # chance each tag is swapped for a random one
    explore: float = 0.08  # chance an interaction ignores taste
    songs_per_artist: float = 8.0


SIZES: dict[str, WorldConfig] = {
    "tiny": WorldConfig(n_songs=300, n_users=120, n_interactions=6000, n_genres=6, days=60),
    "demo": WorldConfig(n_songs=3000, n_users=1000, n_interactions=60_000),
    "large": WorldConfig(n_songs=100_000, n_users=10_000, n_interactions=1_200_000, days=365),
    # `coldstream simulate --world large`'s world (streams.simulate.LARGE: the tiny world's
    # other settings, three times the demo's songs, users and history), so that the offline
    # served harness can be run on the world where the online A/B is measured
    "sim-large": WorldConfig(n_songs=9000, n_users=3000, n_interactions=180_000, n_genres=12,
                             days=60),
}


def world_config(size: str = "demo", **overrides: Any) -> WorldConfig:
    base = SIZES[size]
    return WorldConfig(**{**asdict(base), **overrides})


def generate_world(config: WorldConfig | str = "demo", **overrides: Any) -> Dataset:
    """Build the whole world (catalogue, users, interactions, truth) from one seed."""
    cfg = world_config(config, **overrides) if isinstance(config, str) else config
    if cfg.n_genres > len(GENRES):
        raise ValueError(f"at most {len(GENRES)} genres")
    rng = np.random.default_rng(cfg.seed)
    genre_names = list(GENRES)[: cfg.n_genres]
    songs = _songs(cfg, genre_names, rng)
    users = _users(cfg, rng)
    inter = _interactions(cfg, songs, users, rng)
    catalogue = make_catalogue(
        song_id=[f"w{cfg.seed}-s{i:06d}" for i in range(cfg.n_songs)],
        title=songs["title"], artist=songs["artist"], tags=songs["tags"],
        description=songs["description"], released_at=songs["released_at"],
        genre=[genre_names[g] for g in songs["genre"]],
        subgenre=[GENRES[genre_names[g]].subgenres[s] for g, s in
                  zip(songs["genre"], songs["sub"], strict=True)],
        mood=[list(MOODS)[m] for m in songs["mood"]],
        tempo=songs["tempo"], key=songs["key"], mode=songs["mode"],
        density=songs["density"], loudness_db=songs["loudness"],
        contour=[GENRES[genre_names[g]].contour for g in songs["genre"]],
        audio_seed=songs["audio_seed"],
    )
    user_ids = np.asarray([f"w{cfg.seed}-u{i:05d}" for i in range(cfg.n_users)], dtype=object)
    truth = {
        "config": asdict(cfg),
        "genre_names": genre_names,
        "mood_names": list(MOODS),
        "song_genre": songs["genre"],
        "song_subgenre": songs["genre"] * 3 + songs["sub"],
        "song_mood": songs["mood"],
        "song_popularity": songs["popularity"],
        "user_taste": users["taste"],
        "user_mood": users["mood"],
        "user_pop_affinity": users["pop_affinity"],
        "user_fav_sub": users["fav_sub"],
        "user_activity": users["activity"],
    }
    return Dataset(f"world-{cfg.seed}", catalogue, user_ids, inter, truth)


# --------------------------------------------------------------------------- songs

def _songs(cfg: WorldConfig, genre_names: list[str], rng: np.random.Generator) -> dict[str, Any]:
    n, n_g = cfg.n_songs, len(genre_names)
    n_artists = max(n_g, int(n / cfg.songs_per_artist))
    genre_share = rng.dirichlet(np.full(n_g, 4.0))  # some genres are bigger than others
    artist_genre = rng.choice(n_g, n_artists, p=genre_share)
    artist_sub = rng.integers(0, 3, n_artists)
    artist_pop = rng.lognormal(0.0, 1.0, n_artists)
    prolific = rng.pareto(1.5, n_artists) + 1.0
    artist = rng.choice(n_artists, n, p=prolific / prolific.sum())
    genre = artist_genre[artist]
    sub = np.where(rng.random(n) < 0.8, artist_sub[artist], rng.integers(0, 3, n))
    mood = rng.integers(0, len(MOODS), n)
    mood_params = np.array(list(MOODS.values()))
    base_tempo = np.array([GENRES[g].tempo for g in genre_names])
    tempo = base_tempo[genre] * mood_params[mood, 0] * rng.normal(1.0, 0.05, n)
    p_major = np.clip(np.array([GENRES[g].major for g in genre_names])[genre]
                      + mood_params[mood, 1], 0.02, 0.98)
    mode = (rng.random(n) < p_major).astype(np.int8)
    key = rng.integers(0, 12, n).astype(np.int8)
    density = np.array([GENRES[g].density for g in genre_names])[genre] * rng.choice(
        [0.5, 1.0, 1.0, 2.0], n)
    loudness = -14.0 + mood_params[mood, 2] + rng.normal(0, 1.5, n)
    popularity = artist_pop[artist] * rng.lognormal(0.0, 1.0, n)
    # Release times spread over the world's span; the newest ones become "cold" items.
    released = EPOCH_START_MS + np.sort(rng.random(n)) * (cfg.days * 0.95 * DAY_MS)
    order = rng.permutation(n)  # ids must not encode release order or popularity
    released = released[order].astype(np.int64)
    artist_names = _artist_names(n_artists, artist_genre, genre_names, rng)
    titles, tags, descriptions = _texts(cfg, genre_names, genre, sub, mood, tempo, key, mode,
                                        artist_names[artist], rng)
    return {
        "genre": genre.astype(np.int16), "sub": sub.astype(np.int16),
        "mood": mood.astype(np.int16), "tempo": np.round(tempo, 1), "mode": mode, "key": key,
        "density": density, "loudness": np.round(loudness, 2), "popularity": popularity,
        "released_at": released, "artist": artist_names[artist], "title": titles,
        "tags": tags, "description": descriptions,
        "audio_seed": rng.integers(0, 2**31 - 1, n),
    }


def _artist_names(n: int, genre: np.ndarray, names: list[str],
                  rng: np.random.Generator) -> np.ndarray:
    first = rng.integers(0, len(FIRST), n)
    last = rng.integers(0, len(LAST), n)
    word = rng.integers(0, 6, n)
    style = rng.integers(0, 3, n)
    out = []
    for i in range(n):
        words = GENRES[names[genre[i]]].words
        if style[i] == 0:
            out.append(f"{FIRST[first[i]]} {LAST[last[i]]}")
        elif style[i] == 1:
            out.append(f"The {words[word[i]].title()} {LAST[last[i]]}s")
        else:
            out.append(f"{FIRST[first[i]]} & the {words[word[i]].title()}")
    return np.asarray(out, dtype=object)


def _texts(cfg: WorldConfig, names: list[str], genre: np.ndarray, sub: np.ndarray,
           mood: np.ndarray, tempo: np.ndarray, key: np.ndarray, mode: np.ndarray,
           artist: np.ndarray, rng: np.random.Generator,
           ) -> tuple[list[str], list[list[str]], list[str]]:
    """Titles, tags and descriptions that lean on genre and mood, with deliberate noise."""
    n = len(genre)
    mood_names = list(MOODS)
    all_tags = sorted({t for g in names for t in (g, *GENRES[g].subgenres)} | set(mood_names)
                      | {"chill", "workout", "party", "focus", "vinyl", "live", "remix"})
    other = rng.integers(0, len(names), n)  # a random genre to borrow noise from
    r = rng.random((n, 8))
    picks = rng.integers(0, 6, (n, 4))
    gen_pick = rng.integers(0, len(GENERIC_WORDS), (n, 2))
    tag_pick = rng.integers(0, len(all_tags), (n, 4))
    titles, tags, descs = [], [], []
    for i in range(n):
        style = GENRES[names[genre[i]]]
        noisy = GENRES[names[other[i]]]
        src = noisy if r[i, 0] < 0.3 else style
        w1 = src.words[picks[i, 0]]
        w2 = GENERIC_WORDS[gen_pick[i, 0]]
        title = f"{w1} {w2}" if r[i, 1] < 0.5 else f"{w2} of the {w1}"
        if r[i, 2] < 0.3:
            title = f"{title} {GENERIC_WORDS[gen_pick[i, 1]]}"
        titles.append(title.title())
        t = [names[genre[i]], style.subgenres[sub[i]], mood_names[mood[i]]]
        if r[i, 3] < 0.1:
            t = t[1:]  # genre tag sometimes missing
        t = [all_tags[tag_pick[i, j]] if rng_val < cfg.tag_noise else tag
             for j, (tag, rng_val) in enumerate(zip(t, r[i, 4:7], strict=False))]
        if r[i, 7] < 0.4:
            t.append(all_tags[tag_pick[i, 3]])
        tags.append(list(dict.fromkeys(t)))
        if r[i, 5] < 0.2:
            descs.append(f"New single from {artist[i]}.")
            continue
        inst = (noisy if r[i, 6] < 0.2 else style).instruments[picks[i, 1] % 3]
        pace = "slow" if tempo[i] < 85 else ("driving" if tempo[i] > 125 else "mid-tempo")
        descs.append(
            f"{'An' if mood_names[mood[i]][0] in 'aeiou' else 'A'} "
            f"{mood_names[mood[i]]} {style.subgenres[sub[i]]} track by {artist[i]}, "
            f"{pace} at {tempo[i]:.0f} BPM in {KEYS[key[i]]} {'major' if mode[i] else 'minor'}, "
            f"built on {inst}. About {style.words[picks[i, 2]]} and {w2}."
        )
    return titles, tags, descs


# --------------------------------------------------------------------------- users

def _users(cfg: WorldConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, n_g = cfg.n_users, cfg.n_genres
    n_fav = np.minimum(1 + rng.poisson(0.8, n), min(3, n_g))
    taste = np.full((n, n_g), 0.02)
    weights = rng.dirichlet(np.full(3, 1.5), n)
    for k in range(3):
        fav = rng.integers(0, n_g, n)
        has = n_fav > k
        np.add.at(taste, (np.arange(n)[has], fav[has]), weights[has, k])
    taste /= taste.sum(1, keepdims=True)
    return {
        "taste": taste,
        "fav_sub": rng.integers(0, 3, (n, n_g)),
        "mood": rng.dirichlet(np.full(len(MOODS), 0.7), n),
        "pop_affinity": rng.beta(2.0, 2.0, n),
        "activity": rng.lognormal(0.0, 0.8, n),
    }


# --------------------------------------------------------------------------- interactions

def _sample_rows(cdf: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per entry of ``rows`` from row-wise CDFs (vectorised)."""
    u = rng.random(len(rows))[:, None]
    return np.minimum((cdf[rows] < u).sum(1), cdf.shape[1] - 1)


def _interactions(cfg: WorldConfig, songs: dict[str, Any], users: dict[str, np.ndarray],
                  rng: np.random.Generator) -> Interactions:
    n, n_m = cfg.n_interactions, len(MOODS)
    act = users["activity"]
    user = rng.choice(cfg.n_users, n, p=act / act.sum()).astype(np.int32)
    genre = _sample_rows(np.cumsum(users["taste"], 1), user, rng)
    mood = _sample_rows(np.cumsum(users["mood"], 1), user, rng)
    by_pop = rng.random(n) < users["pop_affinity"][user]
    pop = songs["popularity"]
    item = np.empty(n, dtype=np.int64)
    group_song = songs["genre"].astype(np.int64) * n_m + songs["mood"]
    group_want = genre * n_m + mood
    genre_song = songs["genre"].astype(np.int64)
    for gm in np.unique(group_want):
        rows = np.flatnonzero(group_want == gm)
        pool = np.flatnonzero(group_song == gm)
        if len(pool) == 0:  # no song with this genre and mood: fall back to the genre
            pool = np.flatnonzero(genre_song == gm // n_m)
        item[rows] = _pick(pool, pop, by_pop[rows], rng)
    explore = np.flatnonzero(rng.random(n) < cfg.explore)
    item[explore] = _pick(np.arange(cfg.n_songs), pop, by_pop[explore], rng)
    # Time: after release, most attention soon after, never past the end of the world.
    end = EPOCH_START_MS + cfg.days * DAY_MS
    rel = songs["released_at"][item]
    delay = rng.exponential(cfg.days * DAY_MS / 6, n)
    late = rel + delay >= end
    delay[late] = rng.random(late.sum()) * (end - rel[late])
    ts = (rel + delay).astype(np.int64)
    # Outcome: how well the song fits this listener (genre, favourite sub-genre, mood).
    z = taste_logit(users["taste"], users["mood"], users["fav_sub"], songs["genre"],
                    songs["mood"], songs["sub"], user, item) + rng.normal(0, 0.6, n)
    action = outcomes(1 / (1 + np.exp(-z)), rng.random(n), rng.random(n))
    order = np.argsort(ts, kind="stable")
    return Interactions.build(user[order], item[order], action[order], ts[order])


def taste_logit(taste: np.ndarray, mood: np.ndarray, fav_sub: np.ndarray,
                song_genre: np.ndarray, song_mood: np.ndarray, song_sub: np.ndarray,
                user: np.ndarray, item: np.ndarray) -> np.ndarray:
    """How well each (user, item) pair fits, before noise: genre taste, mood, sub-genre.

    The one rule listeners follow, in the history and in ``coldstream simulate``'s closed loop.
    """
    g_i, m_i = song_genre[item], song_mood[item]
    fit = taste[user, g_i] / taste[user].max(1)
    moodfit = mood[user, m_i] / mood[user].max(1)
    subfit = fav_sub[user, g_i] == song_sub[item]
    return 3.5 * fit + 1.5 * moodfit + 0.8 * subfit - 3.0


def outcomes(accept: np.ndarray, r: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Action codes from acceptance probabilities and two uniform draws per pair."""
    action = np.full(len(accept), ACTION_CODE["skip"], dtype=np.int8)
    kept = r < accept
    action[kept] = ACTION_CODE["play"]
    action[kept & (r2 < 0.25 + 0.5 * accept)] = ACTION_CODE["complete"]
    action[kept & (r2 < 0.3 * accept)] = ACTION_CODE["collect"]
    return action


def _pick(pool: np.ndarray, pop: np.ndarray, by_pop: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    """Popularity-weighted draw where ``by_pop``, uniform (the long tail) elsewhere."""
    out = pool[rng.integers(0, len(pool), len(by_pop))]
    k = int(by_pop.sum())
    if k:
        cdf = np.cumsum(pop[pool])
        out[by_pop] = pool[np.minimum(np.searchsorted(cdf, rng.random(k) * cdf[-1]),
                                      len(pool) - 1)]
    return out


# --------------------------------------------------------------------------- audio

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_CONTOURS = {
    "flat": lambda x: np.ones_like(x),
    "rise": lambda x: 0.4 + 0.6 * x,
    "swell": lambda x: 0.35 + 0.65 * np.sin(np.pi * x),
    "fade": lambda x: 1.0 - 0.6 * x,
}


def render_audio(song: Mapping[str, Any], sr: int = 16_000, seconds: float = 5.0) -> np.ndarray:
    """Synthesise a mono float32 clip for one world song, deterministic from its row.

    ``song`` is a catalogue row (``dataset.catalogue.iloc[i]`` or a dict) with the columns
    genre, tempo, key, mode, density, loudness_db, contour and audio_seed.
    """
    style = GENRES[str(song["genre"])]
    rng = np.random.default_rng(int(song["audio_seed"]))
    n = int(sr * seconds)
    t = np.arange(n) / sr
    out = np.zeros(n, dtype=np.float64)
    beat = 60.0 / float(song["tempo"])
    step = beat / max(float(song["density"]), 0.25)
    scale = _MAJOR if int(song["mode"]) else _MINOR
    tonic = style.register + int(song["key"])
    harmonics = np.asarray(style.harmonics)
    partials = np.arange(1, len(harmonics) + 1)
    note_len = max(step * 1.5, style.attack * 3)
    degree = 0
    for start in np.arange(0.0, seconds, step):
        degree = int(np.clip(degree + rng.integers(-2, 3), -3, 9))
        octave, idx = divmod(degree, 7)
        freq = 440.0 * 2 ** ((tonic + 12 * octave + scale[idx] - 69) / 12)
        a, b = int(start * sr), min(n, int((start + note_len) * sr))
        tt = t[a:b] - start
        env = np.minimum(tt / style.attack, 1.0) * np.exp(-tt / (note_len * 0.6))
        freqs = freq * partials
        ok = freqs < sr / 2
        tone = (harmonics[ok, None] * np.sin(2 * np.pi * freqs[ok, None] * tt)).sum(0)
        out[a:b] += 0.3 * env * tone / harmonics.sum()
    # Bass on every beat (the root), percussion: a kick on beats and noisy hats between.
    root = 440.0 * 2 ** ((tonic - 24 - 69) / 12)
    for start in np.arange(0.0, seconds, beat):
        a, b = int(start * sr), min(n, int((start + beat) * sr))
        tt = t[a:b] - start
        out[a:b] += 0.25 * np.exp(-tt / (beat * 0.5)) * np.sin(2 * np.pi * root * tt)
        if style.drums > 0:
            kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-tt / 0.03)) * tt) * np.exp(-tt / 0.08)
            out[a:b] += 0.5 * style.drums * kick
            h = int((start + beat / 2) * sr)
            hat = rng.standard_normal(min(int(0.04 * sr), max(0, n - h)))
            decay = np.exp(-np.arange(len(hat)) / (0.01 * sr))
            out[h:h + len(hat)] += 0.15 * style.drums * hat * decay
    out *= _CONTOURS[str(song["contour"])](t / seconds)
    rms = np.sqrt(np.mean(out**2)) + 1e-9
    out *= 10 ** (float(song["loudness_db"]) / 20) / rms
    return np.tanh(out).astype(np.float32)  # soft limiter: peaks never clip hard
