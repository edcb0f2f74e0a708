"""A vLLM engine in its own process, driven by JSON lines (run as a script by ``launch.py``).

Imports vllm and the standard library only (never nanovllm), so it runs in any Python that has
vLLM, also one whose torch differs from ours. Protocol, one JSON object per line: the settings in
argv[1]; on stdout, lines starting with ``@@`` (anything else there is vLLM's own printing)::

    @@{"ready": true, "seconds": 21.4}                       once the engine is up
    stdin {"op": "generate", "prompts": [...], "max_tokens": 16, "ignore_eos": false}
                                             -> @@{"outputs": [...]}
    stdin {"op": "metrics"}                  -> @@{"metrics": [...]}   (vllm.LLM.get_metrics())
    stdin {"op": "reset_prefix_cache"}       -> @@{"reset": true}
    stdin {"op": "decode_events", "payload_hex": "..."}  -> vLLM's own decoder on a payload
    end of stdin                             -> the engine shuts down, the process exits
"""

import json
import sys
import time


def reply(obj) -> None:
    sys.stdout.write("@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()


def metric_dict(m) -> dict:
    d = {"name": m.name, "labels": m.labels}
    for key in ("value", "values", "count", "sum", "buckets"):
        if hasattr(m, key):
            d[key] = getattr(m, key)
    return d


def decode_events(payload_hex: str) -> dict:
    import msgspec
    from vllm.distributed.kv_events import KVEventBatch

    batch = msgspec.msgpack.Decoder(KVEventBatch).decode(bytes.fromhex(payload_hex))
    events = [{"type": type(e).__name__, **msgspec.structs.asdict(e)} for e in batch.events]
    return {"ts": batch.ts, "events": events, "data_parallel_rank": batch.data_parallel_rank}


def serve(llm, sampling_params_cls) -> None:
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        try:
            if op == "generate":
                params = sampling_params_cls(
                    temperature=0,
                    max_tokens=req["max_tokens"],
                    ignore_eos=req.get("ignore_eos", False),
                )
                prompts = [
                    {"prompt_token_ids": p} if isinstance(p, list) else p for p in req["prompts"]
                ]
                outs = llm.generate(prompts, params, use_tqdm=False)
                reply({"outputs": [_output(o) for o in outs]})
            elif op == "metrics":
                reply({"metrics": [metric_dict(m) for m in llm.get_metrics()]})
            elif op == "reset_prefix_cache":
                reply({"reset": bool(llm.reset_prefix_cache())})
            elif op == "decode_events":
                reply({"decoded": decode_events(req["payload_hex"])})
            else:
                reply({"error": f"unknown op {op!r}"})
        except Exception as e:  # answer, and keep serving
            reply({"error": f"{type(e).__name__}: {e}"})


def _output(o) -> dict:
    c = o.outputs[0]
    return {
        "prompt_token_ids": list(o.prompt_token_ids),
        "token_ids": list(c.token_ids),
        "text": c.text,
    }


def main() -> None:
    settings = json.loads(sys.argv[1])
    t0 = time.time()
    from vllm import LLM, SamplingParams

    port = settings.pop("metrics_port", None)
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr="127.0.0.1")
    llm = LLM(**settings)
    reply({"ready": True, "seconds": round(time.time() - t0, 1)})
    serve(llm, SamplingParams)
    llm.llm_engine.engine_core.shutdown()  # the engine-core process, now rather than at exit


if __name__ == "__main__":  # vLLM starts its engine core with spawn: the guard is required
    main()
