"""Sweeps on Ray Tune: many runs at once over a search space, on a local Ray or any Ray cluster.

- `space`: search spaces as data (`FIELD=SPEC`), validated with the engine's own field rules.
- `cluster`: connecting to a local Ray sized to the machine, or to a cluster by address (token auth).
- `trial`: the trainable (the engine's Trainer, unchanged, with a Tune-reporting callback); runs in Ray workers.
- `driver`: `run_sweep`: Tuner + search algorithm + ASHA, and the callback that writes trials into the run store.
- `store`: sweep records beside the runs; stop requests from the page.
- `launcher`: the app's side: a sweep as a background process, followed through the store.

Only `trial` and `driver` import Ray, and only when a sweep runs.
"""
