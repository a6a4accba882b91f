"""A stand-in for the built-in model in a test's folder: a tiny U-Net whose weights are set
by hand to call bright pixels cell interior (so it finds the discs of `tests.images_data`
without training), saved with `models.persist` and described by a card in the format
`models.builtin.train_builtin` writes."""
import hashlib
import json
from pathlib import Path

NAME = "nuclei-v1"


def threshold_net():
    """UNet(width 1, depth 1) passing the normalised intensity x through (identity 3x3
    centre taps, identity batch norms) to logits (5 - 10x, 10x - 5, -10): interior where
    x > 0.5."""
    import torch

    from models.unet import UNet
    net = UNet(in_channels=1, n_classes=3, width=1, depth=1, dropout=0.0)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0)
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
        first, last = net.down[0], net.dec[0]
        first[0].weight[0, 0, 1, 1] = 1.0
        first[3].weight[0, 0, 1, 1] = 1.0
        last[0].weight[0, 1, 1, 1] = 1.0          # the skip connection's channel
        last[3].weight[0, 0, 1, 1] = 1.0
        net.head.conv.weight[0, 0, 1, 1] = 1.0
        net.head.out.weight[:, 0, 0, 0] = torch.tensor([-10.0, 10.0, 0.0])
        net.head.out.bias[:] = torch.tensor([5.0, -5.0, -10.0])
    return net.eval()


def write_standin(folder: Path, name: str = NAME, macro_f1: float = 0.5) -> dict:
    """Write `<name>.cellloop` and `<name>.json` into `folder`; return the card."""
    from models.model import SegmentationModel
    from models.persist import model_to_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    net = threshold_net()
    data = model_to_bytes(SegmentationModel(
        net, {"architecture": net.config, "input_mapping": name, "name": name}, module=net))
    (folder / f"{name}.cellloop").write_bytes(data)
    card = {"format": "cellloop-builtin-card", "card_version": 1, "name": name, "version": 1,
            "note": "test stand-in",
            "weights": {"file": f"{name}.cellloop",
                        "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
            "architecture": {**net.config, "parameters": 1, "kind": "U-Net"},
            "input_mapping": {"name": name, "rule": "as the test says"},
            "normalisation": {"percentiles": [1.0, 99.8]}, "postprocess": {},
            "test": {"groups": {"fluorescence-small": {"f1": macro_f1, "n_images": 2}},
                     "macro_f1": macro_f1}}
    (folder / f"{name}.json").write_text(json.dumps(card))
    return card
