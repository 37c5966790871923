"""Inference for the Draw page, one idea a module:
  preprocessing  a canvas turned into an MNIST-like digit (crop, fit 20x20, center of mass, normalize)
  probes         prediction and feature maps in one forward pass, a model's per-call lock and eval mode
  attribution    saliency, integrated gradients and Grad-CAM (captum)
  robustness     predictions under rotation, shift and stroke thickness; a test set's misclassified images

Conventions used throughout:
- a numpy array is a *display image*: 28x28 float in [0, 1], white ink on black (MNIST before
  normalization);
- a torch tensor is a *model input*: normalized with the lab's one normalization (`data.MEAN`, `data.STD`),
  shape [B, 1, 28, 28] (a [28, 28] or [1, 28, 28] tensor is accepted and given the missing dims).
Models map that input to 10 logits or log-probabilities; `softmax(output)` is the probability
either way. Every function predicts in eval mode and restores each module's own `training` flag
afterwards, so do not hand in a model another thread is training (use a weights copy). Calls on
the same model are serialized by a per-model lock (`probes.eval_mode`), so Streamlit sessions sharing
one cached model cannot see each other's hooks or mode switches. Page inference runs in one thread:
`settings.limit_threads`.
"""
