"""The framework-free engine the app and the notebooks share (layer 5).

* :mod:`explorer.live.inputs` — uploads decoded once (by :mod:`explorer.data.decode`), cached by digest;
* :mod:`explorer.live.scene` — model, image, reference labels and target map of a run;
* :mod:`explorer.live.run` — one attack run live (worker, snapshots, stop, replay, metrics);
* :mod:`explorer.live.render` — label maps, constraint masks, perturbations, curves as pictures;
* :mod:`explorer.live.exports` — run files and downloads.

    >>> from explorer.live import prepare_scene, LiveAttack
    >>> scene = prepare_scene("street-unet-mobilenet", "street-000")
    >>> result = LiveAttack(scene, "alma_prox", {"num_steps": 50}).run()
"""
from explorer.live.run import LiveAttack, Snapshot, run_metrics
from explorer.live.scene import Scene, prepare_scene

__all__ = ["LiveAttack", "Scene", "Snapshot", "prepare_scene", "run_metrics"]
