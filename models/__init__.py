"""vidattn models: the attention zoo, backbones, heads and losses."""
