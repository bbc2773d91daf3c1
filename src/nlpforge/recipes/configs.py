"""The settings of the training commands, as typed dataclasses of plain values: one default and one
help text per setting (``nlpforge.settings.setting``). The CLI generates its flags from them, a YAML
config (``--config``) holds the same names, and the recipes read them. No heavy imports here, so the
CLI builds its flags without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from nlpforge.data.options import DataOptions
from nlpforge.errors import ConfigError
from nlpforge.settings import setting
from nlpforge.tracking import TRACKERS

QUANTIZE_MODES = ("int8", "int8-static", "none")
PROMPT_TUNING = ("none", "prompt", "deep-prompt")
CLASSIFIER_POOLING = ("cls", "mean")
# --max-length 0 of `train`: per task; a span_qa context longer than its window is read in overlapping
# pieces, and at 128 most SQuAD paragraphs would be (one in eight still is at 256, one in fifty at 384)
TASK_MAX_LENGTH = {"span_qa": 384}
TRACK_HELP = ("none, or mlflow: log parameters, metrics and the model to MLflow (MLFLOW_TRACKING_URI, "
              "default ./mlruns).")


def _check_positive(config: object, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")


def _data_options(data: DataOptions | dict) -> DataOptions:
    return DataOptions(**data) if isinstance(data, dict) else data


@dataclass
class FinetuneArgs:
    """Everything a fine-tuning run reads; a YAML config holds the same names."""

    task: str = setting(help="Task: classify, tag, span_qa, multilabel (the registry, tasks/__init__.py).")
    model: str = setting(help="Checkpoint to start from (directory or hub name).")
    train: str = setting(help="Training file.")
    out: str = setting(help="Output directory: best checkpoint, metrics.jsonl, resume/.")
    eval: str | None = setting(None, "Evaluation file (keeps the best checkpoint).")
    epochs: float = setting(3.0, "Epochs (fractions allowed).")
    batch_size: int = setting(32, "Examples per micro-batch (all processes together).")
    grad_accum: int = setting(1, "Micro-batches per optimizer step.")
    learning_rate: float = setting(5e-5, "Peak AdamW learning rate.")
    head_learning_rate: float | None = setting(None, "Peak learning rate of the new task head (default: "
                                                     "--learning-rate); a higher one helps heads with many "
                                                     "rare outputs, e.g. multilabel.")
    weight_decay: float = setting(0.01, "AdamW weight decay (none on biases and LayerNorm).")
    warmup_ratio: float = setting(0.1, "Share of the steps warming the learning rate up.")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm.")
    max_length: int = setting(0, "Tokens per example (0: the task's default, 384 for span_qa, whose contexts a "
                                 "shorter window splits, else 128).")
    eval_every: int = setting(0, "Evaluate every N optimizer steps (0: at epoch ends).")
    save_every: int = setting(200, "Write the resume state every N optimizer steps.")
    log_every: int = setting(20, "Log to metrics.jsonl every N optimizer steps.")
    early_stopping: int = setting(0, "Stop after N evaluations without gain (0: never).")
    seed: int = setting(42, "Random seed.")
    bf16: bool = setting(False, "bfloat16 autocast.")
    device: str = setting("cpu", "Where to train and evaluate: cpu, cuda (cuda:N) or auto (a GPU when torch "
                                 "sees one).")
    class_weights: bool = setting(False, "Weight classes by inverse frequency.")
    lm_loss_weight: float = setting(0.0, "GPT-style auxiliary LM loss weight lambda (decoders only).")
    group_by_length: bool = setting(False, "Batch examples of similar length together: less padding, faster "
                                           "on varied lengths.")
    lora_r: int = setting(0, "LoRA rank: train low-rank adapters and the head only, and write an adapter "
                             "directory to OUT (0: full fine-tuning).")
    lora_alpha: float | None = setting(None, "LoRA scale numerator: updates are scaled by alpha / r (default 2r).")
    lora_dropout: float = setting(0.05, "Dropout on the LoRA branch's input.")
    lora_targets: str = setting("attention", "Comma-separated layers to adapt: qkv, out, up, down, or the groups "
                                             "attention (qkv,out), ffn (up,down), all.")
    prompt_tuning: str = setting("none", "Train only a prompt and the head of a frozen encoder: prompt (soft "
                                         "input tokens) or deep-prompt (P-tuning v2: key/value prefixes at every "
                                         "layer); OUT becomes a prompt directory.", choices=PROMPT_TUNING)
    prompt_length: int = setting(20, "Prompt positions of --prompt-tuning.")
    classifier_pooling: str = setting("cls", "What a new classification head reads: the first token (cls), or "
                                             "the mean of the real tokens (mean: the pooling sentence-embedding "
                                             "models such as MiniLM and e5 were trained with).",
                                      choices=CLASSIFIER_POOLING)
    resume: bool = setting(False, "Continue from OUT/resume.")
    max_train_examples: int = setting(0, "Use only the first N training examples (0: all).")
    eval_batch_size: int = setting(64, "Examples per evaluation batch.")
    threads: int = setting(0, "Torch CPU threads (0: torch's default).")
    progress: bool = setting(True, "Show a progress bar.")
    track: str = setting("none", TRACK_HELP, choices=TRACKERS)
    data: DataOptions = setting(help="How to read the data files.", factory=DataOptions)

    def __post_init__(self) -> None:
        self.data = _data_options(self.data)
        self.max_length = self.max_length or TASK_MAX_LENGTH.get(self.task, 128)
        if self.track not in TRACKERS:
            raise ConfigError(f"--track {self.track!r}: choose one of {', '.join(TRACKERS)}")
        _check_positive(self, ("batch_size", "grad_accum", "max_length", "save_every", "log_every",
                               "eval_batch_size"))
        if self.head_learning_rate is not None and self.head_learning_rate <= 0:
            raise ConfigError(f"--head-learning-rate must be > 0, got {self.head_learning_rate}")
        if self.epochs <= 0 or self.learning_rate <= 0:
            raise ConfigError("--epochs and --learning-rate must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.lm_loss_weight < 0:
            raise ConfigError(f"--lm-loss-weight must be >= 0, got {self.lm_loss_weight}")
        if self.lora_r < 0:
            raise ConfigError(f"--lora-r must be >= 0, got {self.lora_r}")
        if self.prompt_tuning not in PROMPT_TUNING:
            raise ConfigError(f"--prompt-tuning {self.prompt_tuning!r}: choose one of {', '.join(PROMPT_TUNING)}")
        if self.classifier_pooling not in CLASSIFIER_POOLING:
            raise ConfigError(f"--classifier-pooling {self.classifier_pooling!r}: choose one of "
                              f"{', '.join(CLASSIFIER_POOLING)}")
        if self.classifier_pooling != "cls" and self.task not in ("classify", "multilabel"):
            raise ConfigError(f"--classifier-pooling applies to classify and multilabel heads, not --task {self.task}")
        if self.prompt_tuning != "none" and self.lora_r:
            raise ConfigError("--lora-r and --prompt-tuning both choose what trains: give one of them")
        _check_positive(self, ("prompt_length",))


@dataclass
class CompressArgs:
    """Everything ``nlpforge compress`` reads: distillation, pruning, quantization, measurement."""

    teacher: str = setting(help="Fine-tuned teacher checkpoint (nlpforge train).")
    task: str = setting(help="The teacher's task: classify, tag, span_qa, multilabel.")
    train: str = setting(help="Training file for distillation.")
    eval: str = setting(help="Evaluation file: every stage is measured on it.")
    out: str = setting(help="Output directory: one folder per stage + report.json/md/png.")
    select_eval: str | None = setting(None, "Held-out file that picks the best student epoch (default: --eval).")
    layers: int = setting(4, "Student depth (initialised from uniformly spaced teacher layers).")
    prune_heads: int = setting(0, "Attention heads to remove from the student.")
    prune_epochs: float = setting(1.0, "Re-distillation epochs after pruning.")
    quantize: str = setting("int8", "int8: dynamic INT8 (torch + ONNX); int8-static: ONNX with calibration; none.",
                            choices=QUANTIZE_MODES)
    calibration_examples: int = setting(256, "int8-static: training examples that calibrate the activations.")
    epochs: float = setting(3.0, "Distillation epochs.")
    batch_size: int = setting(32, "Examples per batch.")
    learning_rate: float = setting(1e-4, "Peak AdamW learning rate.")
    max_length: int = setting(128, "Tokens per example.")
    temperature: float = setting(2.0, "Softmax temperature of the soft targets.")
    alpha: float = setting(0.9, "Weight of the soft-target loss (1 - alpha on gold labels).")
    hidden_weight: float = setting(0.0, "Weight of hidden-state MSE (0: off).")
    attention_weight: float = setting(0.0, "Weight of attention KL (0: off).")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm (0: no clipping).")
    max_train_examples: int = setting(0, "Use only the first N training examples (0: all).")
    threads: int = setting(0, "Torch CPU threads (0: torch's default).")
    seed: int = setting(42, "Random seed.")
    progress: bool = setting(True, "Show progress bars.")
    track: str = setting("none", TRACK_HELP, choices=TRACKERS)
    data: DataOptions = setting(help="How to read the data files.", factory=DataOptions)

    def __post_init__(self) -> None:
        self.data = _data_options(self.data)
        if self.quantize not in QUANTIZE_MODES:
            raise ConfigError(f"--quantize {self.quantize!r}: choose one of {', '.join(QUANTIZE_MODES)}")
        if self.track not in TRACKERS:
            raise ConfigError(f"--track {self.track!r}: choose one of {', '.join(TRACKERS)}")
        if self.prune_heads < 0:
            raise ConfigError("--prune-heads must be >= 0")
        _check_positive(self, ("layers", "batch_size", "max_length"))



OBJECTIVE_NAMES = ("mlm", "wwm", "span", "mlm+nsp", "mlm+sop", "clm")


@dataclass
class PretrainArgs:
    """Everything ``nlpforge pretrain`` reads: objective, corpus, model, schedule, evaluation."""

    objective: str = setting(help="mlm, wwm (whole words), span (SpanBERT), mlm+nsp, mlm+sop, or clm (GPT).",
                             choices=OBJECTIVE_NAMES)
    corpus: list[str] = setting(help="Corpus file, folder or glob: plain text (blank line between documents), "
                                     "JSONL or WikiExtractor output; repeat for several.")
    out: str = setting(help="Output directory: the model (latest evaluation), metrics.jsonl, resume/, blocks/.")
    model: str | None = setting(None, "Checkpoint to continue pre-training (directory or hub name).")
    config: str | None = setting(None, "Train from scratch: a preset (e.g. gpt-6l-h256, bert-6l-h256) or a "
                                       "JSON/YAML model config; needs --tokenizer.")
    tokenizer: str | None = setting(None, "Tokenizer directory (default: the --model's own).")
    max_steps: int = setting(1000, "Optimizer steps.")
    block_size: int = setting(128, "Tokens per training block.")
    batch_size: int = setting(32, "Blocks per micro-batch (all processes together).")
    grad_accum: int = setting(1, "Micro-batches per optimizer step.")
    learning_rate: float = setting(1e-4, "Peak AdamW learning rate.")
    weight_decay: float = setting(0.01, "AdamW weight decay (none on biases and LayerNorm).")
    warmup_ratio: float = setting(0.06, "Share of the steps warming the learning rate up.")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm.")
    mask_rate: float = setting(0.15, "Share of tokens a masked objective predicts.")
    static_masking: bool = setting(False, "One mask per block for the whole run (BERT) instead of a new one "
                                          "each time it is seen (RoBERTa).")
    heldout_share: float = setting(0.05, "Share at the end of each corpus file held out for perplexity.")
    eval_every: int = setting(200, "Evaluate held-out perplexity (and save the model) every N steps.")
    eval_blocks: int = setting(256, "Held-out blocks per evaluation (0: all).")
    save_every: int = setting(200, "Write the resume state every N optimizer steps.")
    log_every: int = setting(20, "Log training loss to metrics.jsonl every N optimizer steps.")
    seed: int = setting(42, "Random seed (masks, block order, initialisation).")
    resume: bool = setting(False, "Continue from OUT/resume.")
    encoding: str | None = setting(None, "Corpus text encoding (default: UTF-8, checked).")
    text_field: str = setting("text", "JSONL corpora: the field holding a document's text.")
    bf16: bool = setting(False, "bfloat16 autocast.")
    threads: int = setting(0, "Torch CPU threads (0: torch's default).")
    progress: bool = setting(True, "Show a progress bar.")
    track: str = setting("none", TRACK_HELP, choices=TRACKERS)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVE_NAMES:
            raise ConfigError(f"--objective {self.objective!r}: choose one of {', '.join(OBJECTIVE_NAMES)}")
        if self.track not in TRACKERS:
            raise ConfigError(f"--track {self.track!r}: choose one of {', '.join(TRACKERS)}")
        if (self.model is None) == (self.config is None):
            raise ConfigError("give exactly one of --model (continue a checkpoint) and --config (from scratch)")
        if self.config is not None and self.tokenizer is None:
            raise ConfigError("--config trains from scratch and needs --tokenizer DIR "
                              "(make one with `nlpforge tokenizer train`)")
        if not self.corpus:
            raise ConfigError("give at least one --corpus file")
        _check_positive(self, ("max_steps", "block_size", "batch_size", "grad_accum", "eval_every", "save_every",
                               "log_every"))
        if self.block_size < 8:
            raise ConfigError(f"--block-size {self.block_size} is too small; use at least 8 tokens")
        if not 0 < self.mask_rate < 1 or not 0 < self.heldout_share < 0.5:
            raise ConfigError("--mask-rate must be in (0, 1) and --heldout-share in (0, 0.5)")
        if self.static_masking and self.objective in ("span", "clm"):
            raise ConfigError(f"--static-masking applies to mlm, wwm, mlm+nsp and mlm+sop, not {self.objective}")


FEWSHOT_METHODS = ("finetune", "lora", "prompt", "deep-prompt", "contrastive", "cloze", "generator")
CLOZE_TUNING = ("full", "lora")


def k_values(value: str | list[int] | int | None) -> list[int]:
    """``--k 8,16`` -> [8, 16] (a YAML config may give an int or a list)."""
    if value is None or value == "":
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    parts = [part.strip() for part in value.split(",") if part.strip()]
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ConfigError(f"--k {value!r}: expected positive integers separated by commas, e.g. 8,16")
    return [int(part) for part in parts]


@dataclass
class FewshotArgs:
    """The K-shot protocol (``nlpforge fewshot``): sample, train, evaluate, over several seeds."""

    method: str = setting(help="How to learn from the sample.",
                          choices=FEWSHOT_METHODS)
    model: str = setting(help="Checkpoint to start from (directory or hub name).")
    train: str = setting(help="Labelled file the few-shot samples are drawn from.")
    eval: str = setting(help="Labelled file every run is evaluated on.")
    out: str = setting(help="Output directory: results.json and the best run's model.")
    k: str = setting("", "Examples per class, e.g. 8 or 8,16 (or use --examples).")
    examples: int = setting(0, "Examples in total, stratified by class (instead of --k).")
    seeds: int = setting(5, "Runs, each on its own sample: seeds --seed, --seed + 1, ...")
    seed: int = setting(0, "First seed.")
    epochs: float | None = setting(None, "Training epochs over the sample (default: the method's: 20; "
                                         "contrastive 1 over its pairs).")
    learning_rate: float | None = setting(None, "Peak learning rate (default: finetune 5e-5, lora 5e-4, prompt "
                                                "and deep-prompt 1e-2, contrastive 6e-5, cloze 2e-5 (with LoRA "
                                                "5e-4)).")
    batch_size: int | None = setting(None, "Examples (contrastive: pairs) per batch (default: 8, contrastive "
                                           "16).")
    max_length: int = setting(128, "Tokens per example; longer texts are cut. Batches pad to their longest "
                                   "text, so texts shorter than this cost nothing more.")
    lora_r: int = setting(8, "lora: adapter rank.")
    lora_targets: str = setting("all", "lora: the layers to adapt (see nlpforge train --lora-targets).")
    prompt_length: int = setting(20, "prompt, deep-prompt: prompt positions.")
    template: list[str] = setting(help="cloze: a prompt with {text} ({text_pair} for pairs) and one {mask}, "
                                       "e.g. '{text}总之很{mask}。'; repeat the flag to ensemble templates.",
                                  factory=list)
    verbalizer: str = setting("", "cloze: the word(s) of each label, one token each: LABEL=WORD[|WORD...] "
                                  "separated by commas, e.g. '1=好,0=差'.")
    label_text: str = setting("", "Every method but cloze and generator: a text saying what each label means, "
                                  "LABEL=TEXT[|TEXT...] separated by commas, e.g. '1=总之很好评,0=总之很差评'; each "
                                  "text joins the sample --label-text-copies times as an example of its label "
                                  "(SetFit's templated examples), so the model starts from what the label says, "
                                  "not from a handful of examples alone. Single texts only; every label needs one.")
    label_text_copies: int = setting(8, "--label-text: how many times each label's text joins the sample.")
    cloze_tuning: str = setting("full", "cloze: tune every weight (full) or LoRA adapters (lora: --lora-r, "
                                        "--lora-targets) on the cloze objective.", choices=CLOZE_TUNING)
    generator: str | None = setting(None, "generator: a meta-trained prompt generator directory (nlpforge "
                                          "fewshot meta-train).")
    description: str | None = setting(None, "generator: the task's description (default: the training file's "
                                            "name and its labels).")
    generator_steps: int = setting(0, "generator: gradient steps on the generated prompt (leave-one-out "
                                      "prototype loss on the K examples); 0: none.")
    reward_iterations: int = setting(0, "generator: evolution-strategy iterations refining the prompt by its "
                                        "leave-one-out accuracy on the K examples (forward calls only); 0: none.")
    pair_iterations: int = setting(20, "contrastive: positive and negative pairs drawn per example.")
    head_steps: int = setting(50, "contrastive: full-batch steps refining the classification head (it starts as "
                                  "the nearest-class-centroid classifier).")
    self_train: int = setting(0, "Self-training: the method's model labels up to N rows of --train outside the "
                                 "sample (their labels are never read) and a fine-tuned student learns from the "
                                 "sample plus the confident half, balanced by class; 0: off.")
    self_train_epochs: float = setting(2.0, "Self-training: the student's epochs.")
    self_train_rounds: int = setting(1, "Self-training: rounds; in each after the first, the last student labels "
                                        "the same texts again for a new student (iPET's generations).")
    self_train_sample_repeats: int = setting(1, "Self-training: the student sees the labelled sample this many "
                                                "times per epoch beside the pseudo-labelled texts (more weight on "
                                                "the gold labels); 1: once.")
    unlabelled: str | None = setting(None, "Self-training: take the unlabelled texts from this file instead of "
                                           "--train (one text per line, or JSON lines {\"text\", \"text_pair\"}).")
    eval_batch_size: int = setting(64, "Examples per evaluation batch.")
    threads: int = setting(0, "Torch CPU threads (0: torch's default).")
    progress: bool = setting(True, "Show progress bars.")
    data: DataOptions = setting(help="How to read the data files.", factory=DataOptions)

    def __post_init__(self) -> None:
        self.data = _data_options(self.data)
        self.k = ",".join(map(str, k_values(self.k)))  # validated; an int or a list (YAML) too
        if (self.self_train < 0 or self.self_train_epochs <= 0 or self.self_train_rounds < 1
                or self.self_train_sample_repeats < 1):
            raise ConfigError("--self-train must be >= 0, --self-train-epochs > 0, --self-train-rounds >= 1 and "
                              "--self-train-sample-repeats >= 1")
        if self.unlabelled and not self.self_train:
            raise ConfigError("--unlabelled is read by self-training only; add --self-train N (texts to label)")
        if self.method not in FEWSHOT_METHODS:
            raise ConfigError(f"--method {self.method!r}: choose one of {', '.join(FEWSHOT_METHODS)}")
        if self.method == "cloze" and not (self.template and self.verbalizer):
            raise ConfigError("--method cloze needs --template (e.g. '{text}总之很{mask}。') and --verbalizer "
                              "(e.g. '1=好,0=差')")
        if self.label_text and self.method in ("cloze", "generator"):
            raise ConfigError(f"--label-text is for the methods that learn from examples; --method {self.method} "
                              "reads labels through its " + ("--verbalizer" if self.method == "cloze" else
                                                              "--description") + " instead")
        if self.method == "generator" and not self.generator:
            raise ConfigError("--method generator needs --generator DIR (nlpforge fewshot meta-train writes one)")
        if self.generator_steps < 0 or self.reward_iterations < 0:
            raise ConfigError("--generator-steps and --reward-iterations must be >= 0")
        if self.cloze_tuning not in CLOZE_TUNING:
            raise ConfigError(f"--cloze-tuning {self.cloze_tuning!r}: choose one of {', '.join(CLOZE_TUNING)}")
        if bool(self.k) == bool(self.examples):
            raise ConfigError("give either --k (examples per class, e.g. 8,16) or --examples (in total)")
        if self.examples < 0:
            raise ConfigError(f"--examples must be >= 1, got {self.examples}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        _check_positive(self, ("seeds", "max_length", "lora_r", "prompt_length", "pair_iterations", "head_steps",
                               "eval_batch_size", "label_text_copies"))
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"--epochs must be > 0, got {self.epochs}")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ConfigError(f"--learning-rate must be > 0, got {self.learning_rate}")

    @property
    def shots(self) -> list[int]:
        """The --k values (empty with --examples)."""
        return k_values(self.k)


@dataclass
class MetaTrainArgs:
    """Meta-training of the prompt generator (``nlpforge fewshot meta-train``)."""

    model: str = setting(help="The frozen encoder the prompts are for (directory or hub name).")
    tasks: list[str] = setting(help="A labelled file per training task (the same columns in all; see the data "
                                    "flags); repeat the flag.")
    out: str = setting(help="Output directory: generator.safetensors, generator.json, metrics.jsonl.")
    episodes: int = setting(300, "Meta-training episodes (one task, N-way K-shot support + queries, each).")
    n_way: int = setting(5, "Classes per episode (fewer when a task has fewer).")
    k: int = setting(8, "Support examples per class.")
    queries: int = setting(8, "Query examples per class.")
    prompt_length: int = setting(10, "Soft prompt vectors the generator emits.")
    learning_rate: float = setting(1e-3, "AdamW learning rate of the generator.")
    max_length: int = setting(64, "Tokens per example.")
    seed: int = setting(0, "Random seed.")
    log_every: int = setting(10, "Write the running loss and accuracy every N episodes.")
    threads: int = setting(0, "Torch CPU threads (0: torch's default).")
    progress: bool = setting(True, "Show a progress bar.")
    data: DataOptions = setting(help="How to read the data files.", factory=DataOptions)

    def __post_init__(self) -> None:
        self.data = _data_options(self.data)
        if not self.tasks:
            raise ConfigError("give at least one --tasks FILE (several: the generator learns across them)")
        _check_positive(self, ("episodes", "n_way", "k", "queries", "prompt_length", "max_length", "log_every"))
        if self.n_way < 2:
            raise ConfigError(f"--n-way must be >= 2, got {self.n_way}")
        if self.learning_rate <= 0:
            raise ConfigError(f"--learning-rate must be > 0, got {self.learning_rate}")
