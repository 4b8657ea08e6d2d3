"""What every method builds on: the Hugging Face encoder layouts (architectures), width-sliced layers
(layers), the model base class (adaptive), losses, analytic FLOPs, and loading pretrained models."""
