"""A Hugging Face Trainer run, written the way its docs write one: a tiny GPT-2 from a config
(no download), a synthetic dataset, gradient accumulation 2."""

import sys

import torch
from torch.utils.data import Dataset
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments


class Tokens(Dataset):
    def __init__(self, n=256, ctx=32, vocab=500):
        g = torch.Generator().manual_seed(0)
        self.data = torch.randint(0, vocab, (n, ctx), generator=g)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return {"input_ids": self.data[i], "labels": self.data[i]}


if __name__ == "__main__":
    model = GPT2LMHeadModel(GPT2Config(vocab_size=500, n_positions=32, n_embd=64, n_layer=2, n_head=2))
    args = TrainingArguments(
        output_dir=sys.argv[1],
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        num_train_epochs=2,
        logging_steps=8,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Tokens())
    out = trainer.train()
    print("global_step", out.global_step)
