"""rFID of the reconstructions against the images (torchmetrics' FID), when the FID Inception weights are given."""

from __future__ import annotations

from pathlib import Path

from ...hub.reports import RFID_REPORTS
from .base import METRICS, Metric


@METRICS.register
class ReconstructionFID(Metric):
    name = "rfid"
    reports = RFID_REPORTS
    weights = {"inception_weights": "FID Inception weights (pt_inception-2015-12-05-6726825d.pth), for rFID"}

    @classmethod
    def create(cls, model, device, options):
        weights = options.weights.get("inception_weights")
        if not weights or not Path(weights).is_file():
            return None, ("rFID unavailable: pass --inception-weights PATH to the FID Inception weights "
                          "(pt_inception-2015-12-05-6726825d.pth); they cannot be downloaded here.")
        try:
            from torchmetrics.image.fid import FrechetInceptionDistance

            fid = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=weights)
        except (ImportError, ModuleNotFoundError) as error:
            return None, f"rFID unavailable: torchmetrics' FID needs torch-fidelity ({error})."
        return cls(fid.to(device), device), ""

    def __init__(self, fid, device) -> None:
        super().__init__(None, device)
        self.fid = fid

    def update(self, images, reconstructions, indices) -> None:
        self.fid.update((images + 1) / 2, real=True)
        self.fid.update((reconstructions + 1) / 2, real=False)

    def compute(self) -> dict:
        return {"rfid": float(self.fid.compute())}
