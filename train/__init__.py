"""Training side (torch): backbones, self-supervised pretext tasks, fine-tuning, detector fitting, evaluation."""
