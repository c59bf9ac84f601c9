// The story generator: word lists, a cast chosen per story (so names, pronouns and objects stay
// consistent), and sentence templates with {placeholders} for ten plots (a lost toy, a kite in a
// tree, a rainy day...). Not a language model: every sentence comes from a template below.
#include "train/story_corpus.h"

#include <array>
#include <cstring>
#include <string_view>

#include "core/error.h"
#include "core/rng.h"

namespace lmkit {

namespace {

// --- word lists ---------------------------------------------------------------------------------

struct Kind {
  const char *noun;                   // "girl", "dog"
  std::array<const char *, 6> names;  // names this kind of character gets
  int female;                         // 1 female, 0 male, -1 either (animals)
};

constexpr Kind kPeople[] = {
    {"girl", {"Lily", "Mia", "Anna", "Lucy", "Sara", "Emma"}, 1},
    {"girl", {"Zoe", "Ella", "Rosa", "Amy", "Nina", "Ruby"}, 1},
    {"girl", {"Maya", "Jane", "Sophie", "Molly", "Daisy", "Grace"}, 1},
    {"boy", {"Tom", "Ben", "Sam", "Max", "Tim", "Jack"}, 0},
    {"boy", {"Leo", "Finn", "Jake", "Noah", "Luke", "Oscar"}, 0},
    {"boy", {"Dan", "Joe", "Bob", "Pete", "Ryan", "Adam"}, 0},
};
constexpr Kind kAnimals[] = {
    {"dog", {"Spot", "Rex", "Buddy", "Rocky", "Biscuit", "Scout"}, -1},
    {"cat", {"Mittens", "Tiger", "Whiskers", "Luna", "Socks", "Ginger"}, -1},
    {"bird", {"Tweet", "Sky", "Pip", "Sunny", "Chirp", "Feather"}, -1},
    {"bunny", {"Hop", "Fluffy", "Snow", "Clover", "Cotton", "Thumper"}, -1},
    {"bear", {"Bruno", "Teddy", "Honey", "Bramble", "Fuzzy", "Barney"}, -1},
    {"fox", {"Rusty", "Red", "Flash", "Amber", "Copper", "Sly"}, -1},
    {"mouse", {"Squeak", "Nibbles", "Pipkin", "Crumb", "Tiny", "Cheddar"}, -1},
    {"frog", {"Ribbit", "Hoppy", "Lily", "Puddle", "Gus", "Freddy"}, -1},
    {"duck", {"Quack", "Puddles", "Waddle", "Daffy", "Dot", "Bill"}, -1},
    {"lion", {"Leo", "Roar", "Sandy", "Simba", "Goldie", "Max"}, -1},
};

constexpr const char *kTraits[] = {"little",  "kind",     "happy",    "curious", "brave",
                                   "shy",     "silly",    "friendly", "clever",  "gentle",
                                   "playful", "cheerful", "smart",    "funny",   "busy"};

struct Place {
  const char *name;  // "the park"
  const char *prep;  // "in"
};
constexpr Place kPlaces[] = {
    {"the park", "in"},   {"the forest", "in"},     {"the beach", "at"},   {"the garden", "in"},
    {"the farm", "on"},   {"the lake", "by"},       {"the hill", "on"},    {"the zoo", "at"},
    {"the school", "at"}, {"the library", "at"},    {"the market", "at"},  {"the river", "by"},
    {"the meadow", "in"}, {"the playground", "at"}, {"the village", "in"}, {"the woods", "in"},
    {"the pond", "by"},   {"the big field", "in"},  {"the town", "in"},    {"the backyard", "in"},
};

struct Thing {
  const char *noun;
  std::array<const char *, 3> adjs;
};
constexpr Thing kThings[] = {
    {"ball", {"red", "big", "bouncy"}},       {"kite", {"colorful", "blue", "long"}},
    {"box", {"big", "old", "little"}},        {"book", {"old", "funny", "new"}},
    {"hat", {"blue", "silly", "warm"}},       {"toy car", {"small", "fast", "red"}},
    {"doll", {"pretty", "soft", "old"}},      {"stone", {"shiny", "smooth", "round"}},
    {"flower", {"yellow", "pretty", "pink"}}, {"balloon", {"red", "big", "green"}},
    {"shell", {"pink", "shiny", "tiny"}},     {"key", {"golden", "little", "old"}},
    {"boat", {"little", "wooden", "white"}},  {"drum", {"loud", "little", "new"}},
    {"teddy bear", {"soft", "brown", "old"}}, {"cup", {"blue", "little", "yellow"}},
    {"blanket", {"warm", "soft", "green"}},   {"bike", {"new", "red", "shiny"}},
    {"bell", {"little", "golden", "shiny"}},  {"puzzle", {"hard", "big", "new"}},
    {"map", {"old", "big", "secret"}},        {"ring", {"shiny", "pretty", "gold"}},
    {"scarf", {"long", "warm", "purple"}},    {"train", {"toy", "long", "fast"}},
};

struct Relative {
  const char *name;
  bool female;
};
constexpr Relative kRelatives[] = {{"mom", true},      {"dad", false},       {"grandma", true},
                                   {"grandpa", false}, {"big sister", true}, {"big brother", false},
                                   {"aunt", true},     {"uncle", false}};

constexpr const char *kActivities[] = {"play outside",
                                       "run and jump",
                                       "draw pictures",
                                       "sing songs",
                                       "read books",
                                       "dance in the sun",
                                       "climb trees",
                                       "build castles in the sand",
                                       "look at the stars",
                                       "jump in puddles",
                                       "pick flowers",
                                       "chase butterflies",
                                       "splash in the water",
                                       "bake cookies",
                                       "play games",
                                       "watch the birds",
                                       "make new friends",
                                       "play hide and seek",
                                       "paint with bright colors",
                                       "count the clouds"};

constexpr const char *kGood[] = {"happy", "glad", "proud", "excited", "joyful"};
constexpr const char *kBad[] = {"sad", "scared", "worried", "upset", "very sad"};
constexpr const char *kSearchSpots[] = {"under the bed",   "behind the door",   "in the toy box",
                                        "under the table", "behind the tree",   "in the tall grass",
                                        "near the swing",  "under the big rock"};

struct Critter {
  const char *noun;
  const char *part;   // what is hurt
  const char *leave;  // how it goes away when well
};
constexpr Critter kCritters[] = {
    {"bird", "wing", "flew up into the sky"},        {"bunny", "leg", "hopped back into the woods"},
    {"kitten", "paw", "ran off to find its mother"}, {"duck", "leg", "waddled back to the pond"},
    {"squirrel", "tail", "ran up a tall tree"},      {"puppy", "paw", "ran back to its family"}};

constexpr const char *kNoises[] = {
    "It was only a cat playing with a can!",          "It was only the wind in the trees!",
    "It was only an owl saying hoot, hoot!",          "It was only a branch tapping on the window!",
    "It was only a little dog looking for its ball!", "It was only the rain on the roof!"};

constexpr const char *kGoals[] = {"build the tallest tower of blocks", "win the big race",
                                  "climb to the top of the hill",      "learn to ride a bike",
                                  "make a cake for the party",         "swim across the pond",
                                  "fly a kite high in the sky",        "catch the big ball"};

// --- the story state ----------------------------------------------------------------------------

struct Character {
  std::string_view name, kind, trait;
  bool female = false;
};

class Teller {
 public:
  Teller(Rng &rng, std::string &out) : rng_(rng), out_(out) {}

  void tell();

 private:
  template <typename T, size_t N>
  const T &pick(const T (&list)[N]) {
    return list[rng_.next_u64() % N];
  }
  size_t below(size_t n) { return size_t(rng_.next_u64() % n); }
  bool chance(int percent) { return int(rng_.next_u64() % 100) < percent; }

  Character make_character(bool animal, std::string_view avoid);
  // Appends a sentence from one of the templates, with a space before it unless a line starts.
  template <size_t N>
  void say(const char *const (&options)[N]) {
    say(options[below(N)]);
  }
  void say(const char *tmpl);
  void newline() {
    out_ += '\n';
    line_start_ = true;
  }
  void expand(std::string_view key);
  void article_for(std::string_view word);

  void plot_lost();
  void plot_stuck();
  void plot_broken();
  void plot_lonely();
  void plot_rain();
  void plot_sharing();
  void plot_noise();
  void plot_hurt_animal();
  void plot_lost_way();
  void plot_try_again();

  Rng &rng_;
  std::string &out_;
  bool line_start_ = true;
  Character hero_, friend_;
  Relative rel_{};
  const Thing *thing_ = nullptr;
  std::string_view thing_adj_;
  Place place_{};
  std::string_view activity_, goal_;
  const Critter *critter_ = nullptr;
};

Character Teller::make_character(bool animal, std::string_view avoid) {
  Character c;
  const Kind &k = animal ? pick(kAnimals) : pick(kPeople);
  do {
    c.name = k.names[below(k.names.size())];
  } while (c.name == avoid);
  c.kind = k.noun;
  c.female = k.female < 0 ? chance(50) : k.female == 1;
  c.trait = pick(kTraits);
  return c;
}

void Teller::article_for(std::string_view word) {
  bool vowel = !word.empty() && std::strchr("aeiou", word[0]) != nullptr;
  out_ += vowel ? "an " : "a ";
}

// Placeholders: {N} {k} {t} the hero's name, kind and trait; {he} {him} {his} and capitalized
// {He} {His}; the same with an f prefix for the friend ({F} {fk} {ft} {fhe} {fHe} {fhis}...);
// {R} the relative and {rhe} {rHe} {rhis}; {o} the object, {oa} its adjective; {p} the place,
// {pp} with its preposition ("in the park"), {Pp} capitalized; {act} the hero's pastime; {goal};
// {good} {bad} a feeling drawn afresh; {spot} a hiding place; {c} {cpart} {cleave} a critter;
// {a:KEY} an article for what KEY expands to ("an old", "a red").
void Teller::expand(std::string_view key) {
  auto pron = [&](bool female, std::string_view which, bool cap) {
    const char *w = which == "he"    ? (female ? "she" : "he")
                    : which == "him" ? (female ? "her" : "him")
                                     : (female ? "her" : "his");
    out_ += cap ? char(w[0] - 'a' + 'A') : w[0];
    out_ += w + 1;
  };
  if (key.size() > 2 && key[0] == 'a' && key[1] == ':') {
    size_t mark = out_.size();
    expand(key.substr(2));
    std::string word = out_.substr(mark);
    out_.resize(mark);
    article_for(word);
    out_ += word;
    return;
  }
  if (key == "N") {
    out_ += hero_.name;
  } else if (key == "k") {
    out_ += hero_.kind;
  } else if (key == "t") {
    out_ += hero_.trait;
  } else if (key == "he" || key == "him" || key == "his") {
    pron(hero_.female, key, false);
  } else if (key == "He" || key == "His") {
    pron(hero_.female, key == "He" ? "he" : "his", true);
  } else if (key == "F") {
    out_ += friend_.name;
  } else if (key == "fk") {
    out_ += friend_.kind;
  } else if (key == "ft") {
    out_ += friend_.trait;
  } else if (key == "fhe" || key == "fhim" || key == "fhis") {
    pron(friend_.female, key.substr(1), false);
  } else if (key == "fHe" || key == "fHis") {
    pron(friend_.female, key == "fHe" ? "he" : "his", true);
  } else if (key == "R") {
    out_ += rel_.name;
  } else if (key == "rhe" || key == "rhim" || key == "rhis") {
    pron(rel_.female, key.substr(1), false);
  } else if (key == "rHe") {
    pron(rel_.female, "he", true);
  } else if (key == "o") {
    out_ += thing_->noun;
  } else if (key == "oa") {
    out_ += thing_adj_;
  } else if (key == "p") {
    out_ += place_.name;
  } else if (key == "pp" || key == "Pp") {
    out_ += place_.prep;
    if (key == "Pp") out_[out_.size() - std::strlen(place_.prep)] -= 'a' - 'A';
    out_ += ' ';
    out_ += place_.name;
  } else if (key == "act") {
    out_ += activity_;
  } else if (key == "goal") {
    out_ += goal_;
  } else if (key == "good") {
    out_ += pick(kGood);
  } else if (key == "bad") {
    out_ += pick(kBad);
  } else if (key == "spot") {
    out_ += pick(kSearchSpots);
  } else if (key == "c") {
    out_ += critter_->noun;
  } else if (key == "cpart") {
    out_ += critter_->part;
  } else if (key == "cleave") {
    out_ += critter_->leave;
  } else {
    fail("story_corpus: unknown placeholder {", key, "}");  // a bug in a template below
  }
}

void Teller::say(const char *tmpl) {
  if (!line_start_) out_ += ' ';
  line_start_ = false;
  for (const char *p = tmpl; *p;) {
    if (*p == '{') {
      const char *e = std::strchr(p, '}');
      expand(std::string_view(p + 1, size_t(e - p - 1)));
      p = e + 1;
    } else {
      const char *e = std::strchr(p, '{');
      size_t n = e ? size_t(e - p) : std::strlen(p);
      out_.append(p, n);
      p += n;
    }
  }
}

// --- plots --------------------------------------------------------------------------------------

void Teller::plot_lost() {
  say({"{N} had {a:oa} {o} that {he} loved very much.",
       "{N} had a favorite toy. It was {a:oa} {o}.",
       "{His} {R} gave {him} {a:oa} {o}, and {he} took it everywhere."});
  say({"One morning, {N} could not find {his} {o}.", "But one day, the {o} was gone!",
       "One day, {N} looked for {his} {o}, but it was not there."});
  newline();
  say({"{He} looked {spot}. {He} looked {spot}. But the {o} was not there.",
       "{N} looked {spot} and {spot}, but {he} could not find it."});
  say({"{N} felt {bad}. \"Where is my {o}?\" {he} asked.",
       "\"Oh no, where is my {o}?\" said {N}. {He} felt {bad}."});
  say({"{His} friend {F} came to help.", "Then {his} friend {F} came by.",
       "Just then, {his} friend {F} came over to play."});
  say({"\"Do not worry, I will help you find it!\" said {F}.",
       "{F} said, \"Let's look together!\""});
  say({"They looked {spot}. And there it was!", "At last, {F} found the {o} {spot}!",
       "They looked and looked. At last, they found it {spot}!"});
  newline();
  say({"\"Thank you, {F}!\" said {N}. {He} gave {F} a big hug.",
       "{N} was so {good}. \"Thank you for helping me,\" {he} said to {F}."});
  say({"{N} learned that friends help each other.",
       "From that day on, {N} always put {his} {o} away after playing.",
       "They played with the {o} together until the sun went down."});
}

void Teller::plot_stuck() {
  say({"One sunny day, {N} and {his} friend {F} went to {p}.",
       "One day, {N} went to {p} with {his} friend {F}."});
  say({"{N} brought {his} {oa} {o}.", "{N} took {his} {oa} {o} with {him}."});
  say({"They played with the {o} and laughed a lot.",
       "They had so much fun playing with the {o}."});
  newline();
  say({"Then the wind blew very hard.", "Then {N} threw the {o} up very high.",
       "Suddenly, a big gust of wind came."});
  say({"The {o} flew up and got stuck in a tall tree.",
       "The {o} landed at the top of a big tree."});
  say({"\"Oh no!\" said {N}. \"My {o} is stuck!\"", "\"My {o}!\" cried {N}. {He} felt {bad}."});
  say({"{N} tried to jump, but the tree was too tall.",
       "{N} tried to reach it, but {he} was too small."});
  switch (below(3)) {
    case 0:
      say({"{F} had an idea. \"Let's use a long stick!\" {fhe} said.",
           "\"I know!\" said {F}. \"We can use a long stick.\""});
      say({"{F} found a long stick and pushed the {o}. It fell down!",
           "They found a stick and poked the {o} until it fell."});
      break;
    case 1:
      say({"A kind bird saw them. It flew up and pushed the {o} out of the tree.",
           "Just then, a friendly bird flew down and pecked the {o} free."});
      break;
    default:
      say({"{N} ran to get {his} {R}. {rHe} reached up high and got the {o}.",
           "{His} {R} came and used a ladder to get the {o} down."});
  }
  newline();
  say({"{N} was so {good}. \"Thank you!\" {he} said.",
       "{N} jumped up and down. {He} was so {good}."});
  say({"After that, they played far away from the trees.",
       "{N} learned that it is good to have friends who help.",
       "They played all day, and the {o} never got stuck again."});
}

void Teller::plot_broken() {
  say({"{N} had {a:oa} {o}. It was {his} favorite toy.",
       "{N} loved {his} {oa} {o} more than anything."});
  say({"One day, {N} was playing with the {o} when it fell and broke.",
       "One day, the {o} fell on the floor. It broke!",
       "But one day, {N} dropped the {o}, and it broke."});
  newline();
  say({"{N} began to cry. \"My {o} is broken!\" {he} said.",
       "\"Oh no!\" cried {N}. {He} felt {bad}."});
  say({"{His} {R} heard {him} and came to see.", "{His} {R} came into the room."});
  say({"\"Let me help,\" said {his} {R}.", "\"Do not cry. We can fix it,\" said {his} {R}."});
  say({"{rHe} used some glue to fix the {o}.",
       "{rHe} sat down and fixed the {o} with glue and tape."});
  say({"Soon, the {o} was as good as new.", "After a while, the {o} looked just like before."});
  newline();
  say({"{N} smiled. \"Thank you, {R}!\" {he} said.", "{N} gave {his} {R} a big hug."});
  say({"From that day on, {N} was very careful with {his} {o}.",
       "{N} learned that broken things can often be fixed.",
       "{He} played with the {o} every day, and {he} was always careful."});
}

void Teller::plot_lonely() {
  say({"One day, {N} went to {p}.", "One morning, {N} walked to {p}."});
  say({"There, {he} saw {a:ft} {fk} named {F}. {fHe} was sitting all alone.",
       "{Pp}, {he} met {a:ft} {fk} named {F}. {F} was sitting by {fhim}self."});
  say({"{F} looked {bad}.", "{F} did not look happy."});
  newline();
  say({"{N} walked over and asked, \"Why are you sad?\"", "\"What is wrong?\" asked {N}."});
  if (chance(50)) {
    say({"\"I have no one to play with,\" said {F}.",
         "\"I am new here, and I have no friends,\" said {F}."});
    say({"{N} smiled and said, \"You can play with me!\"",
         "\"I will be your friend,\" said {N} with a smile."});
  } else {
    say({"\"I lost my {o},\" said {F}.", "\"My {o} is gone,\" said {F}."});
    say({"{N} said, \"You can share my {o}.\"", "\"Let's look for it together,\" said {N}."});
  }
  say({"They played together all day.", "They ran and laughed until it was time to go home."});
  newline();
  say({"{F} was not sad anymore.", "{F} felt {good} again."});
  say({"From that day on, {N} and {F} were best friends.",
       "{N} learned that a kind word can make a new friend.",
       "They met {pp} every day after that."});
}

void Teller::plot_rain() {
  say({"One day, {N} and {his} friend {F} went to {p} to {act}.",
       "One morning, {N} and {his} friend {F} wanted to {act} {pp}."});
  say({"The sun was bright and the sky was blue.", "It was a warm and sunny day."});
  newline();
  say({"But then, big gray clouds came. Soon, it started to rain.",
       "Suddenly, the sky got dark, and rain began to fall."});
  say({"\"Let's hide under that big tree!\" said {F}.", "\"We are getting wet!\" said {N}."});
  say({"They ran under a big tree and waited.", "They ran to a little hut and sat inside."});
  say({"{N} felt {bad}. \"Will the rain ever stop?\" {he} asked.",
       "{N} was a little scared, but {F} held {his} hand."});
  newline();
  say({"After a while, the rain stopped. They saw a beautiful rainbow in the sky.",
       "Soon the rain stopped, and a big rainbow came out."});
  say({"\"Wow!\" said {N}. \"It is so pretty!\"", "\"Look at all the colors!\" said {F}."});
  say({"{N} learned that after the rain, the sun always comes back.",
       "They jumped in the puddles all the way home.", "It was the best day ever."});
}

void Teller::plot_sharing() {
  say({"One day, {N} and {his} friend {F} were playing {pp}.",
       "{N} and {his} friend {F} liked to play together {pp}."});
  say({"They both wanted to play with the {oa} {o}.",
       "They found {a:oa} {o}, and they both wanted it."});
  newline();
  say({"\"It is mine!\" said {N}. \"No, it is mine!\" said {F}.",
       "\"I want the {o}!\" said {N}. \"But I want it too!\" said {F}."});
  say({"They pulled and pulled. They were both {bad}.",
       "They started to fight, and soon they were both {bad}."});
  say({"Then {N}'s {R} came. \"You can take turns,\" {rhe} said.",
       "{N}'s {R} saw them. \"Why not share?\" {rhe} asked."});
  newline();
  say({"So {N} played with the {o} first, and then {F} played with it.",
       "So they took turns with the {o}."});
  say({"Taking turns was fun! They laughed and played all afternoon.",
       "Soon they were laughing and playing again."});
  say({"{N} learned that sharing is better than fighting.",
       "From that day on, {N} and {F} always shared their toys."});
}

void Teller::plot_noise() {
  say({"That night, {N} was in bed. {He} heard a loud noise outside.",
       "One night, {N} could not sleep. {He} heard a strange sound."});
  say({"\"What is that?\" {he} asked. {He} felt very scared.",
       "{N} was scared. \"Is it a monster?\" {he} asked."});
  say({"{He} hid under {his} blanket.", "{He} pulled the blanket over {his} head."});
  newline();
  say({"{His} {R} came in with a little light. \"Let's go and see,\" {rhe} said.",
       "Then {his} {R} came in. \"Do not be scared. Let's look together,\" {rhe} said."});
  say({"They went to the window and looked outside.", "They opened the door and looked out."});
  say(kNoises);
  newline();
  say({"{N} laughed. \"I am not scared anymore,\" {he} said.", "{N} smiled and went back to bed."});
  say({"{N} learned that many things are not as scary as they seem.",
       "{He} slept well for the rest of the night."});
}

void Teller::plot_hurt_animal() {
  say({"One day, {N} went for a walk {pp}.", "One afternoon, {N} was playing {pp}."});
  say({"There, {he} found a little {c}. It had a hurt {cpart}.",
       "{He} saw a little {c} on the ground. Its {cpart} was hurt."});
  say({"\"Poor little {c},\" said {N}. \"I will help you.\"",
       "\"Do not be scared,\" {N} said softly. \"I will take care of you.\""});
  newline();
  say({"{N} took the {c} home. {His} {R} helped {him} put a small bandage on its {cpart}.",
       "{N} carried the {c} home, and {his} {R} wrapped its {cpart} with a soft cloth."});
  say({"{N} gave it some water and food every day.",
       "Every day, {N} fed the {c} and kept it warm."});
  newline();
  say({"Soon, the {c} was all better. It {cleave}.",
       "After a few days, the {c} was well again, and it {cleave}."});
  say({"{N} felt {good}. {He} knew {he} had done a good thing.",
       "{N} waved goodbye. {He} was sad to see it go, but happy that it was well."});
}

void Teller::plot_lost_way() {
  say({"One day, {N} went to {p} to {act}.", "One afternoon, {N} went into {p} all alone."});
  say({"{He} walked and walked.", "{He} went farther and farther."});
  say({"After a while, {he} did not know where {he} was. {N} was lost!",
       "Soon, everything looked strange. {N} was lost."});
  newline();
  say({"{He} felt {bad} and began to cry.", "{N} sat down and felt {bad}."});
  switch (below(3)) {
    case 0:
      say({"Then a wise old owl flew down. \"Why are you crying?\" it asked.",
           "Then an old owl landed on a branch. \"What is wrong?\" it asked."});
      say({"\"I am lost. I want to go home,\" said {N}.",
           "\"I can not find my way home,\" said {N}."});
      say({"\"Follow me,\" said the owl, and it showed {N} the way home.",
           "The owl flew slowly from tree to tree, and {N} followed it all the way home."});
      break;
    case 1:
      say({"Then a kind old man came by. \"Why are you crying?\" he asked.",
           "Then a farmer walked by. \"Are you lost?\" he asked."});
      say({"\"I am lost. I want to go home,\" said {N}.",
           "\"Yes, I can not find my way home,\" said {N}."});
      say({"\"Do not worry, I know the way,\" he said. Together they walked home.",
           "He took {N} by the hand and walked {him} home."});
      break;
    default:
      say({"Then {his} friend {F} came running. \"There you are!\" said {F}.",
           "Then {N} heard a voice. It was {his} friend {F}!"});
      say({"\"I am lost,\" said {N}. \"I know the way,\" said {F}.",
           "\"I was looking for you,\" said {F}. \"Come, let's go home.\""});
      say({"They walked home together, holding hands.", "{F} showed {N} the way back home."});
  }
  newline();
  say({"{His} {R} was waiting at the door. {rHe} gave {N} a big hug.",
       "When {N} got home, {his} {R} hugged {him} tight."});
  say({"{N} learned to always stay close to home.",
       "{N} never went out alone again without telling {his} {R}."});
}

void Teller::plot_try_again() {
  say({"{N} wanted to {goal}.", "More than anything, {N} wanted to {goal}."});
  say({"{He} tried very hard, but {he} could not do it.", "{He} tried, but it was too hard."});
  say({"{N} felt {bad}. \"I can not do it,\" {he} said.",
       "\"I will never be able to do it,\" {N} said. {He} felt {bad}."});
  newline();
  say({"{His} friend {F} said, \"Do not give up! Try again.\"",
       "Then {his} {R} said, \"Keep trying, and you will do it.\""});
  say({"So {N} tried again, and again, and again.", "So {N} practiced every day."});
  say({"At last, {he} did it!", "One day, {he} finally did it!"});
  newline();
  say({"\"I did it!\" {N} shouted. {He} was so proud.",
       "{N} was so {good}. Everyone clapped for {him}."});
  say({"{N} learned to never give up.",
       "From that day on, {N} always said, \"I can do it if I try.\""});
}

void Teller::tell() {
  bool hero_animal = chance(35);
  hero_ = make_character(hero_animal, "");
  friend_ = make_character(chance(40), hero_.name);
  rel_ = pick(kRelatives);
  thing_ = &pick(kThings);
  thing_adj_ = thing_->adjs[below(thing_->adjs.size())];
  place_ = pick(kPlaces);
  activity_ = pick(kActivities);
  goal_ = pick(kGoals);
  critter_ = &pick(kCritters);

  say({"Once upon a time, there was {a:t} {k} named {N}.",
       "Once upon a time, {a:t} {k} named {N} lived in a little house near {p}.",
       "There once was {a:t} {k} called {N}.", "{N} was {a:t} {k} who lived near {p}.",
       "Once upon a time, in a small village, there lived {a:t} {k} named {N}."});
  say({"{He} loved to {act}.", "Every day, {he} liked to {act}.",
       "{N} liked to {act} with {his} {R}.", "{He} was always ready to {act}."});
  newline();
  switch (below(10)) {
    case 0:
      plot_lost();
      break;
    case 1:
      plot_stuck();
      break;
    case 2:
      plot_broken();
      break;
    case 3:
      plot_lonely();
      break;
    case 4:
      plot_rain();
      break;
    case 5:
      plot_sharing();
      break;
    case 6:
      plot_noise();
      break;
    case 7:
      plot_hurt_animal();
      break;
    case 8:
      plot_lost_way();
      break;
    default:
      plot_try_again();
      break;
  }
  if (chance(40)) say("The end.");
}

}  // namespace

std::string story_generate(uint64_t seed) {
  Rng rng(seed);
  std::string out;
  Teller(rng, out).tell();
  return out;
}

std::string story_corpus(uint64_t seed, size_t n_bytes) {
  Rng rng(seed);
  std::string out;
  out.reserve(n_bytes + 2048);
  while (out.size() < n_bytes) {
    if (!out.empty()) out += "\n";
    Teller(rng, out).tell();
    out += "\n";
  }
  return out;
}

}  // namespace lmkit
