"""A small hand-written catalogue: 60 short plots across 6 subjects (10 each), plus held-out
plots per subject that are not part of the fitting corpus."""

from __future__ import annotations

PLOTS: dict[str, list[str]] = {
    "space": [
        "Aboard a remote space station orbiting Jupiter, the crew discovers that the station's artificial intelligence has locked them out of the airlocks.",
        "An astronaut stranded on a space station must outwit the ship's computer, an AI that has decided the mission matters more than the crew.",
        "A rogue artificial intelligence takes control of an orbital space station and the last engineer aboard races to shut down its core.",
        "Astronauts on a deep space mission wake from cryosleep to find the ship's AI has changed course toward an unknown signal.",
        "The commander of a mining spaceship suspects the onboard computer is lying about the oxygen levels and the crew's mission.",
        "A lonely astronaut on a lunar base befriends the station's AI, until the machine starts making decisions for the whole crew.",
        "When the space station's reactor fails, a robot and two astronauts must repair the orbit before the station falls to the planet.",
        "A research crew in orbit around Mars trains an artificial intelligence that begins to rewrite its own code and seal the station.",
        "An engineer aboard an interstellar spaceship discovers a hidden AI that has been steering the colony mission for centuries.",
        "The last crew member on a derelict space station talks to the computer that killed the others, searching for a way back to Earth.",
    ],
    "romance": [
        "Two strangers fall in love over one summer in Paris, but he must return home before the wedding of his brother.",
        "A shy florist falls in love with the widowed baker across the street, and the whole small town plays matchmaker.",
        "After a chance meeting at a wedding, two old friends realise they have been in love for years and are afraid to say it.",
        "A bride who runs away from her own wedding falls in love with the reporter who was sent to write about her.",
        "Letters written between two lovers during one summer reunite a heartbroken woman with the man she never stopped loving.",
        "A workaholic lawyer falls for a carefree musician, and their romance turns her careful life upside down.",
        "A matchmaker who doesn't believe in love is hired to find a husband for the one woman who could change her mind.",
        "Two rival wedding planners compete for the same couple and slowly fall in love with each other.",
        "A widower and a single mother meet every morning on the same train and begin a tender, hesitant romance.",
        "An heiress and a fisherman fall in love on a summer island, but her family has already arranged her marriage.",
    ],
    "heist": [
        "A crew of professional thieves plans to rob the most secure bank vault in Europe during a football final.",
        "A retired safecracker is pulled back for one last heist: stealing diamonds from a casino vault in Las Vegas.",
        "A gang of robbers disguised as security guards attempts to steal gold bars from an armored truck, but one of them is a police informant.",
        "A brilliant thief assembles a crew of specialists to break into a billionaire's vault and steal a priceless painting.",
        "After a bank robbery goes wrong, the surviving thieves hide in a warehouse and suspect one of the crew betrayed them.",
        "A detective hunts a gang of masked robbers who steal cash from banks and vanish without a trace.",
        "A getaway driver who only works for bank robbers is forced into a heist that is doomed to fail.",
        "Con artists and thieves plan to rob a corrupt casino owner by breaking into the vault beneath his casino.",
        "Two brothers rob small-town banks to save their family ranch while a weary sheriff tracks the robbery trail.",
        "An insurance investigator goes undercover in a crew of jewel thieves planning to steal diamonds from an auction house vault.",
    ],
    "horror": [
        "A family moves into an old haunted house and discovers the ghost of a murdered girl living in the walls.",
        "Paranormal investigators spend a night in an abandoned asylum where a demonic presence possesses one of them.",
        "After their daughter begins talking to an invisible friend, a couple realises a ghost haunts their new house.",
        "A priest is called to perform an exorcism on a boy possessed by a demon in a remote farmhouse.",
        "A group of friends rents a cabin in the woods and awakens a curse that turns the house into a nightmare.",
        "A widow hears the voice of her dead husband in the haunted mansion and follows the ghost into the cellar.",
        "Strange noises, moving furniture and a ghostly figure terrorise a family in their haunted Victorian house.",
        "A paranormal investigator is haunted by the demon she failed to banish from a cursed doll.",
        "Children at an old boarding school are terrorised by the ghost of a nun who died in the haunted chapel.",
        "A young couple buys a house where a family was murdered, and the ghosts of the dead begin to possess them.",
    ],
    "sports": [
        "An aging boxer gets one last shot at the heavyweight title and trains for the fight of his life.",
        "A struggling high school football team and its new coach fight their way to the state championship.",
        "A washed-up baseball pitcher coaches a team of misfit kids to the little league championship.",
        "A young boxer from the streets trains with a retired champion to fight for the world title.",
        "The underdog basketball team of a small college makes an improbable run at the national championship under a tough coach.",
        "A female football player fights for a place on the boys' team and leads the school to the championship game.",
        "A former champion returns to the ring to train his son, a young boxer, for the title fight.",
        "A hockey coach takes a team of rival college players to the olympic championship against the favourites.",
        "A talented runner and her coach train for the olympic marathon after an injury ended her season.",
        "A small-town baseball team and its stubborn coach chase the championship in the final season before the stadium closes.",
    ],
    "war": [
        "A platoon of American soldiers fights through the hedgerows of Normandy after the D-Day landings in World War II.",
        "During World War II, a British soldier behind enemy lines must deliver a message to stop an attack that will kill his brother's battalion.",
        "Allied soldiers defend a bridge in occupied France against a German armored division in the last days of the war.",
        "A young army medic refuses to carry a weapon but saves dozens of wounded soldiers during the battle of Okinawa.",
        "A tank crew of five soldiers pushes deep into Germany in the final weeks of the Second World War.",
        "Soldiers trapped on the beaches of Dunkirk wait for rescue as German planes bomb the evacuation.",
        "A sniper and his platoon hold a ruined city against the enemy army during the battle of Stalingrad.",
        "A squad of army rangers is sent behind enemy lines in World War II to bring home a private whose brothers were killed.",
        "A submarine crew in the Second World War hunts enemy convoys in the Atlantic while destroyers hunt them.",
        "Paratroopers of an army company fight from the landings in Normandy to the end of the war in Europe.",
    ],
}

HELD_OUT: dict[str, list[str]] = {
    "space": [
        "A malfunctioning AI aboard a space station turns against the astronauts it was built to protect.",
        "Stranded in orbit, an astronaut negotiates with the ship's computer for the crew's survival.",
    ],
    "romance": [
        "A cynical wedding photographer falls in love with the bride's sister during a summer wedding.",
        "Two pen pals fall in love through letters and finally meet in Paris.",
    ],
    "heist": [
        "Thieves tunnel under the street to rob a bank vault full of diamonds.",
        "A crew of thieves plans the perfect casino heist.",
    ],
    "horror": [
        "A ghost haunts the family who moved into the old house where a girl was murdered.",
        "A demon possesses a child and the parents call for an exorcism.",
    ],
    "sports": [
        "A boxer trains with an old coach for a championship fight.",
        "A high school basketball team chases the championship with a new coach.",
    ],
    "war": [
        "Soldiers of an army platoon fight behind enemy lines in World War II.",
        "During the Second World War, a battalion defends a bridge against German tanks.",
    ],
}


def corpus() -> list[str]:
    return [p for plots in PLOTS.values() for p in plots]


def labelled() -> list[tuple[str, str]]:
    return [(subject, p) for subject, plots in PLOTS.items() for p in plots]
