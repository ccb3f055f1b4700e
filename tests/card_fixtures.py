"""Model card records and a measured comparison, written by hand (shared by the card and Hub tests)."""

from hf_unlearn.cards.model_card import UnlearningCardData

COMPARISON = {
    "original": {"UA": 1.0, "RA": 100.0, "TA": 98.0, "MIA": 2.0},
    "retrain": {"UA": 100.0, "RA": 99.0, "TA": 97.5, "MIA": 100.0},
    "pgu": {"UA": 98.0, "RA": 98.5, "TA": 97.0, "MIA": 96.0},
}


def card_data(comparison=None, ledger=None, model_name="my-model", projection="gamma=0.8, energy `sigma`"):
    """A PGU sample-removal run's card record with its paper and hyperparameters; no outcome recorded."""
    from hf_unlearn.methods.pgu import PGUConfig

    paper = PGUConfig.paper
    return UnlearningCardData(
        model_name=model_name, base_model="org/base-model", method="pgu", scenario="samples", forget_count=7,
        optim="sgd", learning_rate=0.05, epochs=10, stop_rule="auto", stopped_epoch=3.0,
        method_config=PGUConfig().to_dict(), paper_title=paper.title, paper_url=paper.url, paper_bibtex=paper.bibtex,
        projection=projection, ledger=ledger or [], seconds=12.34, comparison=comparison,
    )
