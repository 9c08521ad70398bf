#!/usr/bin/env python3
"""Writes the seed corpus fuzz/corpus/<target>/ from the shared test vectors
(tests/vectors/*.json) and the recorded Cal.com exchanges
(tests/contract/calcom/*.json), in each target's input framing (see the
comment at the top of each fuzz_targets/*.rs). Deterministic: run it again
after the vectors change and commit the result.

booking_sequence takes `arbitrary`-decoded bytes, which cannot be written
from the vectors meaningfully; its seeds are the inputs libFuzzer grew and
minimised (`-merge=1`), kept in fuzz/corpus/booking_sequence/ as they are.

Inputs listed in fuzz/crashes-found/<target>/ (crashes in core not fixed
yet) are never written here, so the bounded run does not start from them.
"""

import hashlib
import json
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
CONTRACT = ROOT / "tests" / "contract" / "calcom"
CORPUS = ROOT / "fuzz" / "corpus"
KNOWN_CRASHES = ROOT / "fuzz" / "crashes-found"
GENERATED = ["retell", "calcom_webhook", "slots", "calcom_answers", "start", "caller"]
# Seeds a few mutations away from a crash in core that is not fixed yet (the
# bounded run finds it from them in seconds): held back while the crash's
# file is in fuzz/crashes-found/<target>/, written again once it leaves.
NEAR_KNOWN_CRASH: dict = {}

# Indices into chrono-tz 0.10's TZ_VARIANTS (fuzz/Cargo.lock pins it); only
# a seed's starting point, the fuzzer moves to any zone.
ZONES = {"Europe/Berlin": 433, "America/New_York": 170, "Australia/Lord_Howe": 358, "Pacific/Chatham": 532}
# 2030-01-01T08:00:00Z, the targets' t0.
T0 = 1893484800


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def short(b):
    """A u8-length-prefixed byte string (cut at 255)."""
    b = b[:255]
    return bytes([len(b)]) + b


def long(b):
    """A u16-LE-length-prefixed byte string."""
    b = b[:65535]
    return struct.pack("<H", len(b)) + b


def enc(s):
    return s.encode("utf-8")


def retell_frame(body, flags=1, header=b""):
    return bytes([flags]) + short(header) + long(body)


def retell_seeds():
    seeds = {}
    for i, case in enumerate(load(VECTORS / "retell_signature.json")["cases"]):
        body = enc(case["body"])
        # Signed by the target (the parser and the booking run) and as recorded (the header parser runs).
        seeds[f"signature-{i}-signed"] = retell_frame(body)
        seeds[f"signature-{i}-header"] = retell_frame(body, flags=0, header=enc(case["header"]))
    args_of = {"customerName": "customer_name", "customerEmail": "customer_email", "serviceId": "service_id",
               "start": "start", "date": "date", "time": "time"}
    for i, case in enumerate(load(VECTORS / "booking_request.json")["cases"]):
        request = case["request"]
        args = {args_of[k]: v for k, v in request.items() if k in args_of}
        call = request.get("retellCallId", "")
        full = {"name": "book_appointment", "call": {"call_id": call}, "args": args}
        seeds[f"booking-{i}-full"] = retell_frame(enc(json.dumps(full, ensure_ascii=False)))
        # The agent's "args only" option, the function named by the URL (flags bits 1-2 = 1).
        only = dict(args, call_id=call)
        seeds[f"booking-{i}-args-only"] = retell_frame(enc(json.dumps(only, ensure_ascii=False)), flags=1 | 2)
    # check_availability, then the booking of an offered time in the same run.
    check = {"name": "check_availability", "call": {"call_id": "call_known_a", "to_number": "+49301234567"},
             "args": {"date": "morgen", "time": "10:00", "service_id": 1}}
    book = {"name": "book_appointment", "call": {"call_id": "call_known_a"},
            "args": {"customer_name": "Jane Doe", "customer_email": "jane at example dot com",
                     "date": "morgen", "time": "10:30", "service_id": "1"}}
    seeds["check-then-book"] = retell_frame(enc(json.dumps(check))) + retell_frame(enc(json.dumps(book)))
    new_call = {"name": "bookAppointment",
                "call": {"call_id": "call_new", "from_number": "0151 2345678", "to_number": "+49 40 1234567"},
                "args": {"customer_name": "Jürgen", "date": "Freitag", "time": "9:05"}}
    seeds["new-call"] = retell_frame(enc(json.dumps(new_call, ensure_ascii=False)))
    return seeds


def webhook_seeds():
    seeds = {}
    for path in sorted(CONTRACT.glob("webhook_*.json")):
        exchange = load(path)
        raw = enc(exchange["request"]["raw_body"])
        header = enc(exchange["request"]["headers"]["X-Cal-Signature-256"])
        seeds[f"{path.stem}-recorded"] = bytes([0]) + short(header) + raw
        seeds[f"{path.stem}-signed"] = bytes([1]) + short(b"") + raw
    return seeds


def response_of(path):
    return load(path).get("response", {})


def slots_seeds():
    seeds = {}
    for path in sorted(CONTRACT.glob("*.json")):
        body = response_of(path).get("body")
        if body is not None and ("slots" in path.stem or isinstance(body.get("data"), dict)):
            seeds[path.stem] = enc(json.dumps(body))
    return seeds


def answers_seeds():
    seeds = {}
    for path in sorted(CONTRACT.glob("*.json")):
        response = response_of(path)
        if response:
            seeds[path.stem] = enc(json.dumps(response, ensure_ascii=False))
    # Retry-After, which Cal.com itself does not send but a proxy in front of it may (seconds or an HTTP date).
    for name, value in [("seconds", "30"), ("date", "Wed, 01 Jan 2030 08:01:00 GMT")]:
        response = {"status": 503, "headers": {"Retry-After": value}, "body": {"message": "Service Unavailable"}}
        seeds[f"retry-after-{name}"] = enc(json.dumps(response))
    return seeds


def start_frame(zone, now, mode, date, rest):
    return struct.pack("<Hq", zone, now) + bytes([mode]) + short(enc(date)) + enc(rest)


def start_seeds():
    seeds = {}
    berlin = ZONES["Europe/Berlin"]
    for i, case in enumerate(load(VECTORS / "booking_request.json")["cases"]):
        request = case["request"]
        seeds[f"booking-{i}-json"] = start_frame(berlin, T0, 2, "", json.dumps(request, ensure_ascii=False))
        if "start" in request and isinstance(request["start"], str):
            seeds[f"booking-{i}-iso"] = start_frame(berlin, T0, 0, "", request["start"])
        if isinstance(request.get("date"), str) or isinstance(request.get("time"), str):
            date, time = str(request.get("date") or ""), str(request.get("time") or "")
            seeds[f"booking-{i}-local"] = start_frame(berlin, T0, 1, date, time)
    # Clock changes: spring gap and autumn overlap, and a half-hour DST zone.
    seeds["gap-berlin"] = start_frame(berlin, T0, 0, "", "2030-03-31T02:30")
    seeds["overlap-berlin"] = start_frame(berlin, T0, 1, "27.10.2030", "02:30")
    seeds["lord-howe"] = start_frame(ZONES["Australia/Lord_Howe"], T0, 1, "übermorgen", "14 Uhr")
    seeds["chatham"] = start_frame(ZONES["Pacific/Chatham"], T0, 1, "next friday", "23.45")
    seeds["far-future"] = start_frame(berlin, 8_210_266_876_799, 1, "tomorrow", "23:59:59")
    return seeds


def caller_seeds():
    seeds = {}
    for i, case in enumerate(load(VECTORS / "phone.json")["cases"]):
        if case["input"] is not None:
            seeds[f"phone-{i}"] = enc(case["region"]) + enc(case["input"])
    for i, case in enumerate(load(VECTORS / "anonymous.json")["cases"]):
        if case["input"] is not None:
            seeds[f"anonymous-{i}"] = b"DE" + enc(case["input"])
    for i, case in enumerate(load(VECTORS / "email.json")["cases"]):
        if case["input"] is not None:
            seeds[f"email-{i}"] = b"DE" + enc(case["input"])
    return seeds


def known_crashes(target):
    folder = KNOWN_CRASHES / target
    if not folder.is_dir():
        return set()
    return {hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def main():
    makers = {"retell": retell_seeds, "calcom_webhook": webhook_seeds, "slots": slots_seeds,
              "calcom_answers": answers_seeds, "start": start_seeds, "caller": caller_seeds}
    for target in GENERATED:
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        skip = known_crashes(target)
        held = {seed for seed, crash in NEAR_KNOWN_CRASH.get(target, {}).items()
                if (KNOWN_CRASHES / target / crash).is_file()}
        written = 0
        for name, data in makers[target]().items():
            if hashlib.sha1(data).hexdigest() in skip or name in held:
                continue
            (folder / name).write_bytes(data)
            written += 1
        print(f"{target}: {written} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
