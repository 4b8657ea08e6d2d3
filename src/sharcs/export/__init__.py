"""ONNX export of a SHARCS model (`sharcs export`) and its routed inference on ONNX Runtime.

graphs.py     the model's pieces as exportable modules: prefix (layers 1..K + router), each width, full
writer.py     export_run: export, fuse, check against PyTorch, quantize, write the folder atomically
manifest.py   what an export folder holds and the checksums that prove it whole (torch-free)
runtime.py    OnnxSharcsModel: a SharcsModel whose compute runs ONNX Runtime sessions
"""
