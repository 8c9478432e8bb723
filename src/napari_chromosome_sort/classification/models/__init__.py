"""The classifier as an object and as a file.

* :mod:`.registry`: what each backbone network is (one entry each);
* :mod:`.backbones`: the torchvision modules and their pretrained weights;
* :mod:`.heads`: the trained heads on cached backbone features;
* :mod:`.classifier`: backbone + head, one ``nn.Module``;
* :mod:`.model_schema`, :mod:`.model_io`: the one self-describing safetensors model file;
* :mod:`.fast_inference`: the frozen forward pass in ONNX Runtime on CPU;
* :mod:`._torchvision_compat`: torchvision imported when its compiled ``_C`` cannot load.
"""
