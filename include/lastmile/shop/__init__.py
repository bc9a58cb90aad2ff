"""The shop side: order sources (files, the shop database) and the validation of their records."""
