"""Fine-tuning the last backbone blocks and the head end to end, after the head is trained on
cached features (random dihedral views, a validation split, early stopping)."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import torch

from napari_chromosome_sort.classification.config import TrainingConfig
from napari_chromosome_sort.classification.features import dihedral
from napari_chromosome_sort.classification.models.heads import class_weights, validation_mask
from napari_chromosome_sort.classification.training.last_blocks import tuned_source
from napari_chromosome_sort.progress import Progress


def finetune(model, images, y, config: TrainingConfig, device) -> Generator[Progress, None, None]:
    """Fine-tune the last ``finetune_blocks`` blocks + head end to end; early stopping."""
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    k = len(model.classes)
    val = validation_mask(y, k, config.val_fraction, rng)
    tr, va = np.flatnonzero(~val), np.flatnonzero(val)
    x_all = model.preprocess(images)  # preprocessed once; views are applied on the fly
    yt = torch.from_numpy(y).long()
    weights = class_weights(y, k, config.class_balance).to(device)
    model.backbone.freeze(config.finetune_blocks)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.finetune_lr)
    bs = max(8, min(config.batch_size, 32))

    def val_loss():
        """Class-weighted log loss of the view-averaged predictions on the validation crops."""
        model.eval()
        with torch.no_grad():
            tot = 0.0
            for s in range(0, len(va), bs):
                b = va[s : s + bs]
                xb = x_all[b].to(device)
                p = sum(torch.softmax(model(dihedral(xb, v)), 1) for v in range(config.views))
                p = p / config.views
                tot += float(
                    torch.nn.functional.nll_loss(
                        torch.log(p + 1e-8), yt[b].to(device), weight=weights, reduction="sum"
                    )
                )
        return tot / max(len(va), 1)

    best = val_loss() if len(va) else np.inf
    best_state = {key: t.detach().clone() for key, t in model.state_dict().items()}
    bad = 0
    for epoch in range(config.finetune_epochs):
        model.eval()  # BatchNorm statistics and dropout stay as trained; gradients still flow
        order = rng.permutation(tr)
        for s in range(0, len(order), bs):
            b = order[s : s + bs]
            xb = dihedral(x_all[b].to(device), int(rng.integers(8)))
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb), yt[b].to(device), weight=weights)
            loss.backward()
            opt.step()
        vloss = val_loss() if len(va) else 0.0
        if vloss < best - 1e-5:
            best, bad = vloss, 0
            best_state = {key: t.detach().clone() for key, t in model.state_dict().items()}
        else:
            bad += 1
        yield Progress(
            epoch + 1,
            config.finetune_epochs,
            f"fine-tuning the network: pass {epoch + 1} of {config.finetune_epochs}",
            {"val_loss": vloss},
        )
        if bad >= config.patience:
            break
    model.load_state_dict(best_state)
    model.backbone.freeze(0)
    model.eval()
    model.backbone.weights_source = tuned_source(model.backbone, config.finetune_blocks)
