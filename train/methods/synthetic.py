"""Synthetic anomalies pasted into normal images: the geometry the anomaly-specific tasks share.

Every operation works on a ``[0, 1]`` float batch ``(B, C, H, W)``, each image drawing its own
parameters, and returns the altered batch with the mask ``(B, 1, H, W)`` of altered pixels:

* ``rectangle_masks`` / ``rotated_rectangle_masks``: a box (area fraction, log-uniform aspect
  ratio) or a thin rotated box (a scar), at a random place;
* ``paste``: ``x' = x (1 - m) + src m`` where ``src`` is the same image shifted by a random
  offset and colour-jittered (CutPaste's "cut a patch, jitter it, paste it elsewhere"), or any
  other source the caller gives (a texture from another image);
* ``feathered``: a mask's edges softened by a Gaussian blur, so a pasted region blends in
  (NSA-style seamless pasting, approximated) and a hard seam is never the cue;
* ``perlin_noise``: 2-D Perlin gradient noise on a random lattice, for DRAEM-style blob masks.

Before any alteration the tasks give every image the same kind of mild random view
(``shared_view``: crop, flip, brightness and contrast), the normal copy included, so the photometric
change of a view is never what tells an altered image from a normal one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from edgessl.edge_runtime.errors import EdgesslError

from ..augment import AugmentConfig, augment

SHARED_VIEW = AugmentConfig(crop_scale=(0.7, 1.0), jitter_p=0.8, strength=0.2, grey_p=0.0)


def shared_view(x: torch.Tensor) -> torch.Tensor:
    """A mild random view of each image of a ``[0, 1]`` batch (``SHARED_VIEW``), given before alteration."""
    return augment(x, SHARED_VIEW)


def feathered(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """``mask`` ``(B, 1, H, W)`` blurred by a Gaussian of ``sigma`` pixels (unchanged when ``sigma`` < 0.3)."""
    if sigma < 0.3:
        return mask
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, device=mask.device, dtype=mask.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    m = F.conv2d(F.pad(mask, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(m, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1)).clamp(0, 1)


def _grid(b: int, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1).expand(b, h, w)
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w).expand(b, h, w)
    return ys, xs


def rectangle_masks(b: int, h: int, w: int, area: tuple[float, float], aspect: tuple[float, float],
                    device) -> torch.Tensor:
    """Axis-aligned boxes of area fraction ``U(area)`` and aspect ratio log-uniform in ``aspect``."""
    a = torch.empty(b, device=device).uniform_(*area) * h * w
    r = torch.exp(torch.empty(b, device=device).uniform_(math.log(aspect[0]), math.log(aspect[1])))
    bh = torch.sqrt(a / r).clamp(1, h - 1)
    bw = torch.sqrt(a * r).clamp(1, w - 1)
    top = torch.rand(b, device=device) * (h - bh)
    left = torch.rand(b, device=device) * (w - bw)
    ys, xs = _grid(b, h, w, device)
    inside = (ys >= top.view(-1, 1, 1)) & (ys < (top + bh).view(-1, 1, 1)) & \
             (xs >= left.view(-1, 1, 1)) & (xs < (left + bw).view(-1, 1, 1))
    return inside.float().unsqueeze(1)


def rotated_rectangle_masks(b: int, h: int, w: int, width: tuple[float, float], length: tuple[float, float],
                            max_angle_deg: float, device) -> torch.Tensor:
    """Thin boxes ``U(width) x U(length)`` (fractions of the image side, at least 1 x 2 pixels)
    rotated by ``U(+-max_angle)``, centred anywhere."""
    side = min(h, w)
    bw = (torch.empty(b, device=device).uniform_(*width) * side).clamp(min=1.0)
    bl = (torch.empty(b, device=device).uniform_(*length) * side).clamp(min=2.0)
    theta = torch.empty(b, device=device).uniform_(-max_angle_deg, max_angle_deg) * (math.pi / 180)
    cy = torch.rand(b, device=device) * (h - 1)
    cx = torch.rand(b, device=device) * (w - 1)
    ys, xs = _grid(b, h, w, device)
    dy, dx = ys - cy.view(-1, 1, 1), xs - cx.view(-1, 1, 1)
    cos, sin = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    return ((u.abs() <= bw.view(-1, 1, 1) / 2) & (v.abs() <= bl.view(-1, 1, 1) / 2)).float().unsqueeze(1)


def jitter(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-image brightness and contrast factors ``U(1 +- strength)`` (CutPaste's colour jitter)."""
    b = x.shape[0]
    bright = 1 + (torch.rand(b, 1, 1, 1, device=x.device) * 2 - 1) * strength
    contrast = 1 + (torch.rand(b, 1, 1, 1, device=x.device) * 2 - 1) * strength
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x * bright - mean) * contrast + mean).clamp(0, 1)


def shifted(x: torch.Tensor) -> torch.Tensor:
    """Each image moved by its own random offset (wrapping): the "cut from elsewhere" source."""
    h, w = x.shape[-2:]
    return torch.stack([torch.roll(img, (int(torch.randint(h, (1,))), int(torch.randint(w, (1,)))), (1, 2))
                        for img in x])


def paste(x: torch.Tensor, mask: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``x (1 - mask) + source mask``."""
    return x * (1 - mask) + source * mask


def perlin_noise(b: int, h: int, w: int, scales: tuple[int, ...], device) -> torch.Tensor:
    """Perlin noise ``(B, 1, H, W)`` in about ``[-0.7, 0.7]``, each image on a lattice of ``s x s``
    cells, ``s`` drawn from ``scales``: random unit gradients at the lattice points, dot products
    with the offsets to the four corners, blended with the fade ``6t^5 - 15t^4 + 10t^3``."""
    out = torch.empty(b, 1, h, w, device=device)
    for i in range(b):
        s = scales[int(torch.randint(len(scales), (1,)))]
        angles = torch.rand(s + 1, s + 1, device=device) * 2 * math.pi
        grads = torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)
        y = torch.arange(h, device=device, dtype=torch.float32) * (s / h)
        x = torch.arange(w, device=device, dtype=torch.float32) * (s / w)
        yi, xi = y.floor().long(), x.floor().long()
        yf, xf = (y - yi).view(-1, 1), (x - xi).view(1, -1)

        def corner(dy: int, dx: int) -> torch.Tensor:
            g = grads[(yi + dy).view(-1, 1), (xi + dx).view(1, -1)]
            return g[..., 0] * (xf - dx) + g[..., 1] * (yf - dy)

        def fade(t: torch.Tensor) -> torch.Tensor:
            return t * t * t * (t * (t * 6 - 15) + 10)

        u, v = fade(xf), fade(yf)
        top = corner(0, 0) * (1 - u) + corner(0, 1) * u
        bottom = corner(1, 0) * (1 - u) + corner(1, 1) * u
        out[i, 0] = top * (1 - v) + bottom * v
    return out


def check_size(method: str, least: int, image_size: int) -> None:
    """A task whose synthetic defects would be a pixel or less below ``least`` px refuses smaller images."""
    if image_size < least:
        raise EdgesslError(f"{method}'s synthetic defects need at least {least} px images, not {image_size}; "
                           f"raise --image-size to {least} or choose another --method")
