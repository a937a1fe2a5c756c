"""Where the worker's GIL time goes, from a py-spy ``--gil --threads --format raw`` profile
(bench/results/stop42/profile_soak.sh): each sample is put in the first category one of its
frames matches (rules in order), per thread (the event loop, the work thread, the others).

    .venv/bin/python bench/results/stop42/gil_categories.py PROFILE.folded"""
import collections
import sys

RULES = [
    ("table changelog", ["send_changelog", "Table.on_key_set", "ManagedUserDict.__setitem__"]),
    ("produce (Faust + aiokafka)", ["Topic.send", "publish_message", "ProducerBuffer",
                                    "Producer.send", "AIOKafkaProducer.send", "OffLoopSender",
                                    "Sender.", "add_message", "_on_published", "Producer.flush"]),
    ("offset commits", ["commit", "offsets.py"]),
    ("consume (Faust + aiokafka)", ["Fetcher", "_drain_messages", "create_event", "on_message",
                                    "_c_aiter", "take_events", "getmany", "decode_timed",
                                    "_to_message", "Stream."]),
    ("vector store calls", ["MeteredStore.call"]),
    ("our handlers", ["streams/agents.py", "streams/pipeline.py"]),
    ("metrics and lag", ["report_lag", "metrics.py", "prometheus", "lag.py"]),
    ("audio and encoders", ["encoders/", "streams/audio.py", "soundfile", "soxr"]),
]


def thread_of(root: str) -> str:
    if "MainThread" in root:
        return "event loop"
    return "work thread" if "coldstream-work" in root else "other threads"


def main(path: str) -> None:
    counts: collections.Counter = collections.Counter()
    total = 0
    with open(path) as lines:
        for line in lines:
            stack, _, n = line.rstrip().rpartition(" ")
            frames, samples = stack.split(";"), int(n)
            total += samples
            cat = next((name for name, pats in RULES
                        if any(p in f for f in frames for p in pats)), "asyncio loop and other")
            counts[(thread_of(frames[0]), cat)] += samples
    print(f"{total} samples with the GIL held")
    for (thread, cat), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"{n / total:6.1%}  {thread:13s}  {cat}")


if __name__ == "__main__":
    main(sys.argv[1])
