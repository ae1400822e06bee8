"""The built-in testbed: a seeded synthetic world, its tokenizer and tiny base models.

Every method in alignlab has a gold measure here (sentiment reward, drift text,
true/false facts, bias questions, antonyms, code exercises, OASST-format dialogues),
so the whole workflow runs and is measured offline on a CPU.
"""

from alignlab.testbed.world import World, WorldConfig

__all__ = ["World", "WorldConfig"]
